from . import functional, metrics  # noqa: F401
from .table import format_table1, group_metrics  # noqa: F401
