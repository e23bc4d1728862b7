"""JSON records of the detection study: written atomically, compared after a JSON round trip."""
import json
import os
import os.path as osp


def dump_json_atomic(obj, path: str) -> None:
    """Write JSON to ``path`` through a temporary file renamed into place."""
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    tmp = f'{path}.tmp{os.getpid()}'
    with open(tmp, 'w', encoding='utf-8') as f:
        json.dump(obj, f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def json_normalise(obj):
    """Tuples to lists etc., as a JSON round trip would."""
    return json.loads(json.dumps(obj, default=str))
