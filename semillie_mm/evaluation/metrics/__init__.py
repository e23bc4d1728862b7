"""mmagic METRICS added by semillie-mm (PSNR, SSIM, NIQE are mmagic's)."""
from .gt_mean import GTMeanPSNR, GTMeanSSIM
from .imagenet_agreement import ImageNetAgreement
from .loe import LOE
from .reference_fid import ReferenceFID

__all__ = ['LOE', 'ReferenceFID', 'GTMeanPSNR', 'GTMeanSSIM',
           'ImageNetAgreement']
