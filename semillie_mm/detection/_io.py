"""JSON records of the detection study: written atomically, compared after a JSON round trip."""
import json

from ..utils.fileio import atomic_write_json


def dump_json_atomic(obj, path: str) -> None:
    """Write JSON to ``path`` atomically (:func:`~semillie_mm.utils.fileio.atomic_write_json`).

    Args:
        obj: A JSON-serialisable object.
        path (str): The file.
    """
    atomic_write_json(path, obj, indent=2)


def json_normalise(obj):
    """Tuples to lists etc., as a JSON round trip would.

    Args:
        obj: A JSON-serialisable object.

    Returns:
        The object after ``json.loads(json.dumps(obj))``.
    """
    return json.loads(json.dumps(obj, default=str))
