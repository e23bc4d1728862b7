"""semillie-mm: Semi-LLIE as an OpenMMLab (MMagic) plugin.

Importing this package registers every component into mmagic's registries
(MODELS, DATASETS, TRANSFORMS, METRICS, HOOKS, OPTIMIZERS). It is cheap: no model
is built, no weight file is read and no data is scanned at import time.
"""
# isort: off  (compat must come first: its fixes apply before mmagic is used)
from . import (  # noqa: F401,E402
    apis,
    compat,  # noqa: F401  (must come first: fixes applied before mmagic is used)
    datasets,
    engine,
    evaluation,
    models,
    ops,
)
from .version import __version__  # noqa: F401
# isort: on

