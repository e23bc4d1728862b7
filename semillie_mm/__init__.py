"""semillie-mm: Semi-LLIE as an OpenMMLab (MMagic) plugin.

Importing this package registers every component into mmagic's registries
(MODELS, DATASETS, TRANSFORMS, METRICS, HOOKS, OPTIMIZERS). It is cheap: no model
is built, no weight file is read and no data is scanned at import time.
"""
from . import compat  # noqa: F401  (must come first: fixes applied before mmagic is used)
from .version import __version__  # noqa: F401
from . import apis, datasets, engine, evaluation, models, ops  # noqa: F401,E402
