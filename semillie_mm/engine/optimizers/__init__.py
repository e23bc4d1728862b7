from . import adamp  # noqa: F401
