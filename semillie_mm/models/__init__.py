from . import archs, editors, encoders, losses  # noqa: F401
