"""User-facing APIs: enhance images with a trained model (docs/enhance.md)."""
from .inference import (enhance_image, enhance_path, enhance_tensor,
                        init_enhancer, read_image, write_image_atomic)

__all__ = [
    'init_enhancer', 'enhance_image', 'enhance_path', 'enhance_tensor',
    'read_image', 'write_image_atomic'
]
