"""ImageNet classification agreement between enhanced images and their GT.

A semantic metric in the spirit of the paper's Table VII (which asks whether
an enhanced image keeps its *meaning* for a recognition network): a frozen
ImageNet classifier labels each enhanced image and its ground truth, and the
**top-1 agreement** is the fraction of pairs whose arg-max class is the same.
The optional **top-5 agreement** counts a pair when the GT's top-1 class is
among the output's five highest classes. Both are in [0, 1], higher is
better; an output equal to its GT scores 1.

The classifier is anything with a ``logits(img)`` method that maps a
(B, 3, H, W) RGB batch in [0, 1] to (B, num_classes) logits, normally
:class:`semillie_mm.models.encoders.ImageNetEncoder` (EfficientNet-Lite0
trained on ImageNet-1k, the installable stand-in for RAM, whose weights
cannot ship). See docs/metrics.md.
"""
from typing import List, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

ImageLike = Union[np.ndarray, torch.Tensor]


def _as_list(images: Union[ImageLike, Sequence[ImageLike]],
             channel_order: str) -> List[torch.Tensor]:
    """Split a batch / list of images into (3, H, W) float tensors in [0, 1].

    numpy arrays are HWC (or HW, or a NHWC stack); tensors are CHW (or a
    NCHW stack). ``uint8`` data is divided by 255; float data is taken to be
    in [0, 1] already (and clamped to it).
    """
    if isinstance(images, np.ndarray):
        images = list(images) if images.ndim == 4 else [images]
    elif isinstance(images, torch.Tensor):
        images = list(images) if images.dim() == 4 else [images]
    order = channel_order.lower()
    if order not in ('rgb', 'bgr'):
        raise ValueError(f"channel_order must be 'rgb' or 'bgr', got "
                         f'{channel_order!r}')
    out = []
    for img in images:
        if isinstance(img, np.ndarray):
            if img.ndim == 2:
                img = img[..., None]
            if img.ndim != 3:
                raise ValueError('numpy images must be HxWxC (or HxW), got '
                                 f'shape {img.shape}')
            img = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)
        elif not isinstance(img, torch.Tensor):
            raise TypeError('images must be numpy arrays or tensors, got '
                            f'{type(img).__name__}')
        elif img.dim() == 2:
            img = img[None]
        if img.dim() != 3 or img.size(0) not in (1, 3):
            raise ValueError('tensor images must be CxHxW with 1 or 3 '
                             f'channels, got shape {tuple(img.shape)}')
        img = img.detach()
        img = img.float() / 255 if img.dtype == torch.uint8 else img.float()
        if img.size(0) == 1:
            img = img.expand(3, -1, -1)
        elif order == 'bgr':
            img = img.flip(0)
        out.append(img.clamp(0, 1))
    return out


def _classifier_device(classifier) -> Tuple[torch.device, torch.dtype]:
    """Device and float dtype of the classifier's first parameter/buffer."""
    if isinstance(classifier, torch.nn.Module):
        for t in list(classifier.parameters()) + list(classifier.buffers()):
            if t.is_floating_point():
                return t.device, t.dtype
    return torch.device('cpu'), torch.float32


def imagenet_topk(classifier,
                  images: Union[ImageLike, Sequence[ImageLike]],
                  k: int = 5,
                  batch_size: int = 8,
                  channel_order: str = 'rgb',
                  antialias: bool = False) -> np.ndarray:
    """The ``k`` highest-scoring classes of each image.

    Args:
        classifier: An :class:`ImageNetEncoder` or any object with a
            ``logits(img)`` method, (B, 3, H, W) RGB in [0, 1] ->
            (B, num_classes). It is used as it is (an ``nn.Module`` is not
            switched to eval mode here; ImageNetEncoder always is).
        images: A list of images (uint8 HxWxC numpy arrays, 0..255; float
            CxHxW tensors in [0, 1]; uint8 tensors, 0..255; grey images are
            repeated to 3 channels), or one NxHxWxC array / NxCxHxW tensor.
        k (int): Number of classes per image. Default: 5.
        batch_size (int): Images per forward pass. Default: 8.
        channel_order (str): 'rgb' or 'bgr', the order of ``images``.
            Default: 'rgb'.
        antialias (bool): When the classifier has an ``img_size`` (as
            ImageNetEncoder, 224), each image is first resized to
            ``img_size`` x ``img_size`` here (so that images of any sizes
            share a batch), with bilinear interpolation
            (``align_corners=False``). With False (default) this is exactly
            the resize the encoder does itself, so the classes are those of
            ``classifier.logits(img)`` on the full image; True antialiases
            the shrinking (as ImageNet's evaluation resize does), which
            matters for large, noisy images. Default: False.

    Returns:
        np.ndarray: (N, k) int64 class indices, highest logit first, computed
        without gradients on the classifier's device.
    """
    imgs = _as_list(images, channel_order)
    device, dtype = _classifier_device(classifier)
    size = getattr(classifier, 'img_size', None)
    if size is not None:
        size = (int(size), int(size))
    rows = []
    with torch.no_grad():
        i = 0
        while i < len(imgs):
            # a batch: up to batch_size images of one size (all the same
            # size once resized to the classifier's input size)
            batch = []
            shape = None
            while i < len(imgs) and len(batch) < batch_size:
                img = imgs[i].to(device=device, dtype=dtype)[None]
                if size is not None and tuple(img.shape[-2:]) != size:
                    img = F.interpolate(
                        img,
                        size=size,
                        mode='bilinear',
                        align_corners=False,
                        antialias=antialias)
                if shape is not None and img.shape != shape:
                    break
                shape = img.shape
                batch.append(img)
                i += 1
            logits = classifier.logits(torch.cat(batch))
            rows.append(logits.float().topk(k, dim=1).indices.cpu())
    if not rows:
        return np.zeros((0, k), dtype=np.int64)
    return torch.cat(rows).numpy().astype(np.int64)


def agreement_from_classes(output_topk: np.ndarray,
                           gt_top1: np.ndarray) -> Tuple[float, float]:
    """Top-1 and top-5 agreement from already computed classes.

    Args:
        output_topk (np.ndarray): (N, k) classes of the outputs, highest
            first (k >= 1; the top-5 figure uses the first min(k, 5)).
        gt_top1 (np.ndarray): (N,) top-1 classes of the ground truths.

    Returns:
        tuple[float, float]: ``(top1, top5)`` agreement rates in [0, 1]
        (NaN for N = 0).
    """
    output_topk = np.asarray(output_topk).reshape(len(output_topk), -1)
    gt_top1 = np.asarray(gt_top1).reshape(-1)
    if len(output_topk) != len(gt_top1):
        raise ValueError(f'{len(output_topk)} outputs but {len(gt_top1)} '
                         'ground truths')
    if len(gt_top1) == 0:
        return float('nan'), float('nan')
    top1 = float(np.mean(output_topk[:, 0] == gt_top1))
    top5 = float(np.mean((output_topk[:, :5] == gt_top1[:, None]).any(1)))
    return top1, top5


def imagenet_agreement(
        classifier,
        outputs: Union[ImageLike, Sequence[ImageLike]],
        gts: Union[ImageLike, Sequence[ImageLike]],
        top5: bool = False,
        batch_size: int = 8,
        channel_order: str = 'rgb',
        antialias: bool = False) -> Union[float, Tuple[float, float]]:
    """ImageNet top-1 (and top-5) agreement of enhanced images with their GT.

    The top-1 agreement is the fraction of pairs whose arg-max ImageNet class
    on the output equals the arg-max class on the ground truth; the top-5
    agreement the fraction whose GT top-1 class is among the output's five
    highest classes. Images of a pair may differ in size (each is resized
    to the classifier's input size).

    Args:
        classifier: An :class:`ImageNetEncoder` or anything with
            ``logits(img)`` (see :func:`imagenet_topk`).
        outputs: Enhanced images: a list of uint8 HxWxC RGB numpy arrays or
            float CxHxW tensors in [0, 1], or one NHWC array / NCHW tensor.
        gts: The ground truths, as many as ``outputs``, same conventions.
        top5 (bool): Also return the top-5 agreement. Default: False.
        batch_size (int): Images per forward pass. Default: 8.
        channel_order (str): 'rgb' or 'bgr', of both lists. Default: 'rgb'.
        antialias (bool): See :func:`imagenet_topk`. Default: False.

    Returns:
        float | tuple[float, float]: The top-1 agreement in [0, 1], or
        ``(top1, top5)`` when ``top5`` is True.
    """
    outputs = _as_list(outputs, channel_order)
    gts = _as_list(gts, channel_order)
    if len(outputs) != len(gts):
        raise ValueError(f'{len(outputs)} outputs but {len(gts)} ground '
                         'truths')
    kw = dict(batch_size=batch_size, channel_order='rgb', antialias=antialias)
    out_cls = imagenet_topk(classifier, outputs, k=5 if top5 else 1, **kw)
    gt_cls = imagenet_topk(classifier, gts, k=1, **kw)[:, 0]
    agree1, agree5 = agreement_from_classes(out_cls, gt_cls)
    return (agree1, agree5) if top5 else agree1
