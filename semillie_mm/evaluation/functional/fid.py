"""Frechet Inception Distance between enhanced images and a reference folder.

The Inception network is read from a LOCAL file (nothing is downloaded). Two
files are accepted, detected automatically:

- ``pt_inception-2015-12-05-6726825d.pth`` (pytorch-fid's port of the
  TensorFlow FID Inception; a plain state dict). It is loaded into mmagic's
  :class:`mmagic.evaluation.functional.InceptionV3` (the same network code
  pytorch-fid uses: FID-patched Inception blocks, bilinear resize to 299x299,
  input scaled to [-1, 1], 2048-d pool features). This is the default style:
  numbers are comparable to pytorch-fid, the tool most LLIE papers use.
- ``inception-2015-12-05.pt`` (NVIDIA StyleGAN2-ADA's TorchScript Inception,
  what mmagic's own ``FrechetInceptionDistance`` calls the 'StyleGAN' style),
  run on uint8 input with ``return_features=True``.

The distance is the standard closed form (:func:`frechet_distance`).
"""
import os
import os.path as osp
from typing import Dict, Iterable, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn as nn

from ...utils.fileio import IMG_EXTENSIONS, atomic_path

PT_INCEPTION_FILE = 'pt_inception-2015-12-05-6726825d.pth'
PT_INCEPTION_URL = ('https://github.com/mseitzer/pytorch-fid/releases/'
                    'download/fid_weights/' + PT_INCEPTION_FILE)
TERO_INCEPTION_FILE = 'inception-2015-12-05.pt'
TERO_INCEPTION_URL = ('https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/'
                      'pretrained/metrics/' + TERO_INCEPTION_FILE)

# Where each torchvision-Inception module sits in mmagic's InceptionV3 blocks
# (mmagic.evaluation.functional.fid_inception.InceptionV3.__init__).
_BLOCK_LAYOUT = (
    ('Conv2d_1a_3x3', 0, 0), ('Conv2d_2a_3x3', 0, 1), ('Conv2d_2b_3x3', 0, 2),
    ('Conv2d_3b_1x1', 1, 0), ('Conv2d_4a_3x3', 1, 1),
    ('Mixed_5b', 2, 0), ('Mixed_5c', 2, 1), ('Mixed_5d', 2, 2),
    ('Mixed_6a', 2, 3), ('Mixed_6b', 2, 4), ('Mixed_6c', 2, 5),
    ('Mixed_6d', 2, 6), ('Mixed_6e', 2, 7),
    ('Mixed_7a', 3, 0), ('Mixed_7b', 3, 1), ('Mixed_7c', 3, 2),
)


def inception_missing_message(path: Optional[str]) -> str:
    """The error text for a missing Inception weight file."""
    return (
        f'FID needs the Inception weights as a local file, but '
        f'{path!r} does not exist. Download ONE of them on a machine with '
        f'internet access and pass its path as `inception_path`:\n'
        f'  - {PT_INCEPTION_FILE} (pytorch-fid, recommended): '
        f'{PT_INCEPTION_URL}\n'
        f'  - {TERO_INCEPTION_FILE} (StyleGAN2-ADA TorchScript): '
        f'{TERO_INCEPTION_URL}\n'
        'See docs/metrics.md.')


def pt_inception_to_blocks(state_dict: Dict[str, torch.Tensor]
                           ) -> Dict[str, torch.Tensor]:
    """Map a pytorch-fid Inception state dict onto mmagic's block layout.

    Args:
        state_dict (dict): Keys like ``Mixed_5b.branch1x1.conv.weight``
            (``fc.*`` is dropped: the FID features come before it).

    Returns:
        dict: Keys like ``blocks.2.0.branch1x1.conv.weight``.
    """
    out = {}
    prefixes = {name: f'blocks.{b}.{i}.' for name, b, i in _BLOCK_LAYOUT}
    for key, value in state_dict.items():
        head, _, rest = key.partition('.')
        if head in prefixes:
            out[prefixes[head] + rest] = value
        elif head not in ('fc', 'AuxLogits'):
            raise KeyError(f'unexpected key {key!r} in the Inception state '
                           'dict')
    return out


def blocks_to_pt_inception(state_dict: Dict[str, torch.Tensor]
                           ) -> Dict[str, torch.Tensor]:
    """Inverse of :func:`pt_inception_to_blocks` (used by the tests)."""
    names = {f'blocks.{b}.{i}.': name for name, b, i in _BLOCK_LAYOUT}
    out = {}
    for key, value in state_dict.items():
        for prefix, name in names.items():
            if key.startswith(prefix):
                out[name + '.' + key[len(prefix):]] = value
                break
    return out


class InceptionFeatureExtractor(nn.Module):
    """2048-d Inception pool features of RGB images in [0, 255].

    Args:
        inception_path (str, optional): Local weight file (see module doc).
            Required unless ``network`` is given.
        network (nn.Module, optional): A ready network with mmagic's
            ``InceptionV3`` interface (``forward(x in [0,1]) -> [feat]``),
            e.g. a random-weight one for tests.
        style (str): ``'auto'`` (detect from the file), ``'pytorch-fid'`` or
            ``'StyleGAN'``.

    Raises:
        FileNotFoundError: ``inception_path`` does not exist (the message says
            which file to download and from where).
    """

    def __init__(self,
                 inception_path: Optional[str] = None,
                 network: Optional[nn.Module] = None,
                 style: str = 'auto'):
        super().__init__()
        if network is not None:
            self.net = network
            self.style = 'pytorch-fid' if style == 'auto' else style
        else:
            if inception_path is None or not osp.isfile(
                    osp.expanduser(inception_path)):
                raise FileNotFoundError(
                    inception_missing_message(inception_path))
            self.net, self.style = self._load(
                osp.expanduser(inception_path), style)
        self.net.eval()
        for p in self.net.parameters():
            p.requires_grad_(False)

    @staticmethod
    def _load(path: str, style: str) -> Tuple[nn.Module, str]:
        if style in ('auto', 'StyleGAN'):
            try:
                return torch.jit.load(path, map_location='cpu'), 'StyleGAN'
            except Exception as e:  # noqa: BLE001 (not TorchScript)
                if style == 'StyleGAN':
                    raise RuntimeError(
                        f'{path} is not a TorchScript Inception: {e}') from e
        from mmagic.evaluation.functional import InceptionV3
        try:
            state = torch.load(path, map_location='cpu', weights_only=True)
        except Exception as e:  # noqa: BLE001
            raise RuntimeError(
                f'cannot read {path} as a TorchScript Inception nor as an '
                f'Inception state dict ({e}); expected {PT_INCEPTION_FILE} '
                f'or {TERO_INCEPTION_FILE} (see docs/metrics.md)') from e
        net = InceptionV3([3], resize_input=True, normalize_input=True,
                          load_fid_inception=False)
        net.load_state_dict(pt_inception_to_blocks(state), strict=True)
        return net, 'pytorch-fid'

    @torch.no_grad()
    def forward(self, imgs: torch.Tensor) -> torch.Tensor:
        """Extract features.

        Args:
            imgs (Tensor): ``(B, 3, H, W)`` RGB, values in [0, 255].

        Returns:
            Tensor: ``(B, 2048)`` float64 features on the CPU.
        """
        dev = next(iter(self.net.parameters()), torch.empty(0)).device
        imgs = imgs.to(dev).float()
        if self.style == 'StyleGAN':
            feat = self.net(imgs.round().clamp(0, 255).to(torch.uint8),
                            return_features=True)
        else:
            feat = self.net(imgs / 255.)[0]
        return feat.reshape(feat.shape[0], -1).double().cpu()


def feature_statistics(feats: Union[np.ndarray, torch.Tensor]
                       ) -> Tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (rows are samples) of a feature matrix."""
    feats = np.asarray(feats, dtype=np.float64)
    if feats.ndim != 2 or feats.shape[0] < 2:
        raise ValueError('FID needs at least 2 images on each side, got '
                         f'features of shape {feats.shape}.')
    return feats.mean(axis=0), np.cov(feats, rowvar=False)


def _psd_sqrt(mat: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix (eigh)."""
    vals, vecs = np.linalg.eigh((mat + mat.T) / 2)
    return (vecs * np.sqrt(np.clip(vals, 0, None))) @ vecs.T


def frechet_distance(mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray,
                     cov2: np.ndarray) -> float:
    """Frechet distance of two Gaussians.

    ``||mu1 - mu2||^2 + tr(cov1) + tr(cov2) - 2 tr((cov1 cov2)^(1/2))``.

    ``tr((cov1 cov2)^(1/2))`` is the sum of the square roots of the
    eigenvalues of ``cov1 cov2``, which equal those of the symmetric PSD
    matrix ``cov1^(1/2) cov2 cov1^(1/2)``; they are computed with
    :func:`numpy.linalg.eigh`. This is the value pytorch-fid and mmagic's
    ``FrechetInceptionDistance._calc_fid`` get from
    ``scipy.linalg.sqrtm(cov1 @ cov2)``, but stays real and stable when the
    covariances are singular (fewer images than feature dimensions), where
    ``sqrtm`` of the non-symmetric product needs an ``eps`` offset or fails
    with an imaginary component. (mmagic's function also passes
    ``disp=False``, deprecated in SciPy 1.17 and removed in 1.18.)

    Args:
        mu1, mu2 (np.ndarray): Means, shape ``(D,)``.
        cov1, cov2 (np.ndarray): Covariances, shape ``(D, D)``.

    Returns:
        float: The distance.
    """
    mu1, mu2 = np.atleast_1d(mu1), np.atleast_1d(mu2)
    cov1, cov2 = np.atleast_2d(cov1), np.atleast_2d(cov2)
    if mu1.shape != mu2.shape or cov1.shape != cov2.shape:
        raise ValueError('the two sets of statistics differ in size: '
                         f'{mu1.shape}/{cov1.shape} vs {mu2.shape}/'
                         f'{cov2.shape}')
    s1 = _psd_sqrt(cov1)
    mid = s1 @ cov2 @ s1
    eig = np.linalg.eigvalsh((mid + mid.T) / 2)
    tr_covmean = float(np.sqrt(np.clip(eig, 0, None)).sum())
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(cov1) + np.trace(cov2) -
                 2 * tr_covmean)


def list_images(folder: str) -> list:
    """Image files under ``folder`` (recursive, sorted)."""
    if not osp.isdir(folder):
        raise FileNotFoundError(f'reference folder {folder} does not exist')
    files = []
    for root, dirs, names in os.walk(folder):
        dirs.sort()
        files += [
            osp.join(root, n) for n in sorted(names)
            if osp.splitext(n)[1].lower() in IMG_EXTENSIONS
        ]
    return files


def _read_rgb(path: str) -> np.ndarray:
    import cv2
    img = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError(f'cannot read image {path}')
    return img[..., ::-1]


def extract_features(extractor: nn.Module,
                     images: Iterable[np.ndarray],
                     batch_size: int = 16) -> np.ndarray:
    """Features of RGB uint8 HxWx3 images (batched when sizes agree).

    Returns:
        np.ndarray: ``(N, D)`` float64.
    """
    feats, batch = [], []

    def flush():
        if batch:
            x = torch.from_numpy(np.stack(batch).transpose(0, 3, 1, 2).copy())
            feats.append(extractor(x.float()).numpy())
            batch.clear()

    for img in images:
        if batch and (img.shape != batch[0].shape or len(batch) >= batch_size):
            flush()
        batch.append(np.ascontiguousarray(img))
    flush()
    if not feats:
        return np.zeros((0, 0))
    return np.concatenate(feats, axis=0)


def folder_statistics(extractor: nn.Module,
                      folder: str,
                      batch_size: int = 16,
                      cache_file: Optional[str] = None
                      ) -> Tuple[np.ndarray, np.ndarray, int]:
    """Inception mean/covariance of all images in a folder.

    Args:
        extractor (nn.Module): :class:`InceptionFeatureExtractor`.
        folder (str): Reference images (recursive).
        batch_size (int): Images per forward pass (same-size images only).
        cache_file (str, optional): ``.npz`` file. When it exists the
            statistics are read from it; otherwise they are written to it.

    Returns:
        tuple: ``(mean, cov, num_images)``.
    """
    if cache_file and osp.isfile(cache_file):
        data = np.load(cache_file)
        return data['mu'], data['sigma'], int(data['num'])
    files = list_images(folder)
    if len(files) < 2:
        raise ValueError(f'FID reference folder {folder} holds {len(files)} '
                         'images; at least 2 are needed.')
    feats = extract_features(extractor, (_read_rgb(f) for f in files),
                             batch_size)
    mu, sigma = feature_statistics(feats)
    if cache_file:
        with atomic_path(cache_file, suffix='.tmp.npz') as tmp:
            np.savez(tmp, mu=mu, sigma=sigma, num=len(files))
    return mu, sigma, len(files)


def fid_from_features(feats: np.ndarray, ref_mu: np.ndarray,
                      ref_cov: np.ndarray) -> float:
    """FID of a feature matrix against reference statistics."""
    mu, cov = feature_statistics(feats)
    return frechet_distance(mu, cov, ref_mu, ref_cov)


def fid_folders(enhanced: Union[str, Sequence[np.ndarray]],
                reference: str,
                inception_path: Optional[str] = None,
                extractor: Optional[nn.Module] = None,
                batch_size: int = 16) -> float:
    """FID between enhanced images and a reference folder.

    Args:
        enhanced (str | list[np.ndarray]): A folder or RGB uint8 arrays.
        reference (str): Folder of normal-light reference images.
        inception_path (str, optional): Inception weight file.
        extractor (nn.Module, optional): Overrides ``inception_path``.
        batch_size (int): Batch size.

    Returns:
        float: FID (lower is better).
    """
    if extractor is None:
        extractor = InceptionFeatureExtractor(inception_path)
    if isinstance(enhanced, str):
        enhanced = (_read_rgb(f) for f in list_images(enhanced))
    feats = extract_features(extractor, enhanced, batch_size)
    mu, cov, _ = folder_statistics(extractor, reference, batch_size)
    return fid_from_features(feats, mu, cov)
