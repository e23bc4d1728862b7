"""User-facing APIs: enhance images with a trained model (docs/enhance.md).

- :mod:`.inferencer`: :class:`SemiLLIEInferencer` (mmengine
  ``BaseInferencer``) and the low-level :func:`init_enhancer`; its
  pipeline's transforms are in
  :mod:`semillie_mm.datasets.transforms.enhancement_inputs`;
- :mod:`.enhancement_network`: the network of a built model (the editor's
  ``enhancer()``);
- :mod:`.output_plan`: the inputs of a call and their output paths;
- :mod:`.cpu_tuning`: the opt-in CPU tuning of a call;
- :mod:`.pretrained`: the trained model shipped in the package
  (:func:`shipped_model`);
- :mod:`.tiling`: tiled inference of large images, :func:`enhance_image`;
- :mod:`.image_io`: reading (EXIF, 16-bit, alpha), atomic writing;
- :mod:`.webui`: the gradio demo (imports gradio only when used).
- :mod:`.video`: videos frame by frame (OpenCV in and out, temporal
  smoothing).
"""
from semillie_mm.datasets.transforms.enhancement_inputs import (
    LoadImageForEnhancement,
    PackEnhancementInputs,
)

from .enhancement_network import PreprocessedGenerator, select_enhancement_network
from .image_io import IMG_EXTENSIONS, list_images, read_image, side_by_side, write_image_atomic
from .inferencer import SemiLLIEInferencer, init_enhancer
from .pretrained import DEFAULT_MODEL, PRETRAINED_DIR, shipped_model
from .tiling import DEFAULT_TILE_OVERLAP, DEFAULT_TILE_SIZE, enhance_image, enhance_tensor

__all__ = [
    'SemiLLIEInferencer', 'LoadImageForEnhancement', 'PackEnhancementInputs',
    'PreprocessedGenerator', 'select_enhancement_network', 'init_enhancer',
    'enhance_image', 'enhance_tensor', 'read_image', 'write_image_atomic',
    'list_images', 'side_by_side', 'IMG_EXTENSIONS', 'DEFAULT_TILE_SIZE',
    'DEFAULT_TILE_OVERLAP', 'shipped_model', 'PRETRAINED_DIR', 'DEFAULT_MODEL'
]
