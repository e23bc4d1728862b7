from .cab import CAB, ChannelAttention
from .illumination_estimator import IlluminationEstimator
from .mssb import MSSB
from .mssg import MSSG
from .mssm import MSSM
from .semillie_net import SemiLLIENet
from .ss2d import SS2D

__all__ = [
    'CAB', 'ChannelAttention', 'IlluminationEstimator', 'MSSB', 'MSSG', 'MSSM',
    'SS2D', 'SemiLLIENet'
]
