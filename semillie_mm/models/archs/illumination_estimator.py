"""Illumination estimation module (IEM) of Semi-LLIE (paper Sec. III-C, Fig. 3)."""
import torch
import torch.nn as nn


class IlluminationEstimator(nn.Module):
    """Estimate a 3-channel illumination map from the low-light image.

    A brightness prior (the mean over the colour channels) is concatenated with the
    image; a 1x1 conv lifts the 4 channels to ``mid_channels``, a 5x5 grouped conv
    mixes spatially, and a 1x1 conv maps back to a 3-channel illumination map.

    Args:
        in_channels (int): image channels. Default: 3.
        mid_channels (int): width of the hidden layer. Default: 64.
        groups (int): groups of the 5x5 conv. The paper calls it depth-wise
            (``groups=mid_channels``); the authors' code uses 4, the default here.
        out_channels (int): channels of the illumination map. Default: 3.
    """

    def __init__(self,
                 in_channels: int = 3,
                 mid_channels: int = 64,
                 groups: int = 4,
                 out_channels: int = 3):
        super().__init__()
        self.conv_in = nn.Conv2d(in_channels + 1, mid_channels, 1)
        self.conv_spatial = nn.Conv2d(
            mid_channels, mid_channels, 5, padding=2, groups=groups)
        self.conv_out = nn.Conv2d(mid_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args:
            x (Tensor): image of shape (B, C, H, W).

        Returns:
            Tensor: illumination map of shape (B, out_channels, H, W).
        """
        prior = x.mean(dim=1, keepdim=True)
        feat = self.conv_in(torch.cat([x, prior], dim=1))
        return self.conv_out(self.conv_spatial(feat))
