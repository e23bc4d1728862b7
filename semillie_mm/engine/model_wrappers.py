"""A separate-DDP model wrapper that also runs on CPU (gloo).

MMEngine's runner passes ``device_ids=[LOCAL_RANK]`` to every wrapper that
subclasses ``DistributedDataParallel``; PyTorch rejects ``device_ids`` for CPU
modules. This wrapper drops them when the model lives on the CPU, so
``tools/dist_train.sh`` works on CPU-only machines as well as on GPUs.
"""
from mmengine.device import get_device
from mmengine.model import MMSeparateDistributedDataParallel

# MMEngine's runner looks model wrappers up in its root registry (it does not
# descend into mmagic's child registry), so the wrapper is registered there;
# mmagic's registry still finds it through its parent.
from mmengine.registry import MODEL_WRAPPERS


@MODEL_WRAPPERS.register_module()
class DeviceAwareSeparateDDP(MMSeparateDistributedDataParallel):
    """``MMSeparateDistributedDataParallel`` that works with CPU modules.

    Args:
        module (nn.Module): the model (each trainable submodule gets its own DDP).
        broadcast_buffers (bool): as in DDP. Default: False.
        find_unused_parameters (bool): as in DDP. Default: False.
        **kwargs: further DDP arguments.
    """

    def __init__(self,
                 module,
                 broadcast_buffers: bool = False,
                 find_unused_parameters: bool = False,
                 **kwargs):
        if get_device() == 'cpu':
            kwargs.pop('device_ids', None)
            kwargs.pop('output_device', None)
        super().__init__(
            module,
            broadcast_buffers=broadcast_buffers,
            find_unused_parameters=find_unused_parameters,
            **kwargs)
