"""Channel-attention block (CAB) used inside every MSSB."""
import torch
import torch.nn as nn

from ...ops.conv_wgrad import Conv2d


class GlobalAvgPool(nn.Module):
    """The mean of each channel over all pixels, (B, C, H, W) -> (B, C, 1,
    1), as ``nn.AdaptiveAvgPool2d(1)`` (to float rounding: the sum runs in
    another order), with a cheaper backward.

    On channels-last maps, as :class:`CAB` gets them, the adaptive pool's
    backward makes its gradient a full (B, C, H, W) map in the
    channels-first format, which the autograd engine then adds to the
    product's channels-last gradient across formats, strided. The sum's
    backward is the expanded gradient itself, added without a copy (the
    whole attention, forward and backward, at 8 x 64 x 128²: 48 against
    73 ms on a Zen 3). Low-precision maps are summed and divided in float32
    and rounded once, as the adaptive pool does.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args:
            x (Tensor): (B, C, H, W).

        Returns:
            Tensor: (B, C, 1, 1), the per-channel means, in ``x``'s dtype.
        """
        acc = torch.promote_types(x.dtype, torch.float32)
        s = x.sum((2, 3), keepdim=True, dtype=acc)
        return (s / (x.shape[2] * x.shape[3])).to(x.dtype)


class ChannelAttention(nn.Module):
    """Squeeze-and-excitation channel attention.

    Args:
        channels (int): number of channels.
        squeeze_factor (int): reduction of the hidden layer. Default: 30.
    """

    def __init__(self, channels: int, squeeze_factor: int = 30):
        super().__init__()
        hidden = max(channels // squeeze_factor, 1)
        self.attention = nn.Sequential(
            GlobalAvgPool(), nn.Conv2d(channels, hidden, 1),
            nn.ReLU(inplace=True), nn.Conv2d(hidden, channels, 1),
            nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args:
            x (Tensor): (B, C, H, W).

        Returns:
            Tensor: ``x`` re-weighted per channel, same shape.
        """
        return x * self.attention(x)


class CAB(nn.Module):
    """Conv 3x3 (C -> C/ratio), GELU, conv 3x3 (-> C), channel attention.

    Args:
        channels (int): number of channels.
        compress_ratio (int): width reduction of the middle layer. Default: 3.
        squeeze_factor (int): channel-attention reduction. Default: 30.
    """

    def __init__(self,
                 channels: int,
                 compress_ratio: int = 3,
                 squeeze_factor: int = 30):
        super().__init__()
        mid = max(channels // compress_ratio, 1)
        self.body = nn.Sequential(
            Conv2d(channels, mid, 3, padding=1), nn.GELU(),
            Conv2d(mid, channels, 3, padding=1),
            ChannelAttention(channels, squeeze_factor))

    def forward(self, x: torch.Tensor, inplace: bool = False) -> torch.Tensor:
        """Args:
            x (Tensor): (B, C, H, W).
            inplace (bool): without gradients only: free the intermediate
                maps as soon as possible and re-weight in place (same
                numbers). Default: False.

        Returns:
            Tensor: (B, C, H, W).
        """
        if not inplace or torch.is_grad_enabled():
            return self.body(x)
        conv1, act, conv2, ca = self.body
        h = act(conv1(x))
        h = conv2(h)
        return h.mul_(ca.attention(h))
