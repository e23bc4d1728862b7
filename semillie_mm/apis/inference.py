"""Former module of the enhancement API, kept so that old imports work.

The code now lives in :mod:`semillie_mm.apis.inferencer` (the inferencer and
the network), :mod:`semillie_mm.apis.tiling` and
:mod:`semillie_mm.apis.image_io`; import from :mod:`semillie_mm.apis`.
"""
from .image_io import read_image, write_image_atomic  # noqa: F401
from .inferencer import enhance_image, init_enhancer  # noqa: F401
from .tiling import (DEFAULT_TILE_OVERLAP, DEFAULT_TILE_SIZE,  # noqa: F401
                     enhance_tensor)
