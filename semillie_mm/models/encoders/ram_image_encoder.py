# Copyright (c) semillie-mm contributors.
"""The image encoder of the Recognize Anything Model (RAM), frozen.

RAM (Zhang et al., 2023) encodes an image with a Swin Transformer and projects the
tokens to a 512-d space shared with its tag decoder. Semi-LLIE (paper Sec. III-D/E)
uses that encoder as a fixed feature extractor for two losses:

* the semantic contrastive loss on the *image embeddings*
  ``image_proj(cat(avg_pool(tokens), tokens))`` of shape (B, 1 + h * w, 512)
  (145 tokens for a 384 x 384 input);
* the RAM perceptual loss on the *stage feature maps* of the Swin backbone.

The Swin Transformer is timm's implementation; RAM's released weights
(``ram_swin_large_14m.pth``, Microsoft Swin layout) are remapped onto it by
:func:`convert_ram_checkpoint`.
"""
import logging
import os.path as osp
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmagic.registry import MODELS
from mmengine.logging import print_log

from .frozen_encoder import FrozenImageEncoder
from .ram_tagging_head import RAMTaggingHead

RAM_WEIGHTS_HELP = (
    "RAM's weights are published by the recognize-anything project "
    '(https://github.com/xinyu1205/recognize-anything) on Hugging Face as '
    "'ram_swin_large_14m.pth' (e.g. https://huggingface.co/spaces/xinyu1205/"
    'Recognize_Anything-Tag2Text/blob/main/ram_swin_large_14m.pth). Download it '
    'yourself and pass its local path as `pretrained`; this program never '
    'downloads weights.')


# Prefixes of the two parts of RAM's state dict this encoder uses.
VISUAL_PREFIX = 'visual_encoder.'
PROJ_PREFIX = 'image_proj.'


def _load_state_dict_file(path: str, weights_only: bool = True) -> dict:
    """Read a checkpoint file and return its (flat) state dict.

    Args:
        path (str): Local path of the checkpoint.
        weights_only (bool): Passed to :func:`torch.load`. Keep True unless the
            file is trusted and needs arbitrary unpickling.

    Returns:
        dict: The state dict (the ``'model'`` or ``'state_dict'`` entry when the
        file wraps it, as RAM's file does with ``'model'``).
    """
    try:
        ckpt = torch.load(
            path, map_location='cpu', weights_only=weights_only, mmap=True)
    except RuntimeError:
        # mmap needs the zip-based format; legacy files are read normally.
        ckpt = torch.load(path, map_location='cpu', weights_only=weights_only)
    if not isinstance(ckpt, dict):
        raise TypeError(f'{path} does not hold a state dict (got '
                        f'{type(ckpt).__name__}).')
    for key in ('model', 'state_dict'):
        if key in ckpt and isinstance(ckpt[key], dict):
            return ckpt[key]
    return ckpt


def convert_ram_checkpoint(state_dict: Dict[str, torch.Tensor],
                           swin: nn.Module) -> Tuple[dict, dict]:
    """Split RAM's state dict and map its Swin part onto timm's layout.

    Differences between the Microsoft Swin layout (RAM) and timm's
    ``SwinTransformer`` (checked against both sources):

    * Microsoft merges patches at the *end* of stage i (``layers.i.downsample``,
      i = 0..2); timm merges at the *start* of stage i + 1, so the keys move to
      ``layers.(i+1).downsample``. ``PatchMerging`` has the same parameter names
      (``norm``, ``reduction``) and the same 2x2 neighbour order in both.
    * ``relative_position_index`` and ``attn_mask`` are buffers that timm
      rebuilds (non-persistent there): dropped.
    * All other names agree (``patch_embed.proj/norm``, ``blocks.j.norm1/attn.qkv/
      attn.proj/attn.relative_position_bias_table/norm2/mlp.fc1/mlp.fc2`` and
      the final ``norm``). RAM's Swin has no classifier head; ours is built with
      ``num_classes=0`` so it has none either.
    * ``relative_position_bias_table`` has (2 * window - 1)^2 rows in both, per
      block with the same clamping of the window to the stage resolution, so
      the sizes agree when the encoder is configured like the checkpoint.

    This uses timm's own ``checkpoint_filter_fn`` for these steps (it detects
    the Microsoft layout by ``layers.0.downsample`` and also resizes a patch
    embedding / bias table whose size differs from the model's).

    Args:
        state_dict (dict): RAM's state dict (keys ``visual_encoder.*``,
            ``image_proj.*`` and the parts of RAM this encoder does not use).
        swin (nn.Module): The timm ``SwinTransformer`` the weights are for.

    Returns:
        tuple(dict, dict): the Swin state dict in timm's layout and the
        ``image_proj`` state dict (keys ``weight``, ``bias``).
    """
    from timm.models.swin_transformer import checkpoint_filter_fn

    visual = {
        k[len(VISUAL_PREFIX):]: v
        for k, v in state_dict.items() if k.startswith(VISUAL_PREFIX)
    }
    proj = {
        k[len(PROJ_PREFIX):]: v
        for k, v in state_dict.items() if k.startswith(PROJ_PREFIX)
    }
    # timm recognises the Microsoft layout by 'layers.0.downsample.*' (stage 0
    # of a Microsoft Swin ends with a patch merging, timm's stage 0 has none)
    # and then shifts every downsample to the next stage.
    visual = checkpoint_filter_fn(visual, swin)
    return visual, proj


@MODELS.register_module()
class RAMImageEncoder(FrozenImageEncoder):
    """RAM's image encoder (Swin Transformer + image projection), frozen.

    Defaults give RAM's Swin-L/384: embed 192, depths (2, 2, 18, 2), heads
    (6, 12, 24, 48), window 12, 384 x 384 input, width 1536 -> 512 projection.

    The encoder is frozen: all parameters have ``requires_grad=False`` and the
    module stays in eval mode even when a parent calls ``.train()``. It is still
    differentiable with respect to its *input*, so a loss on its features sends
    gradient to the image that was encoded (the enhancement network's output).

    Sharing: Swin-L is large (195 M parameters), so one instance should serve
    both RAM losses. :class:`SemanticContrastiveLoss` and
    :class:`RAMPerceptualLoss` accept either a config dict of this class (they
    build their own) or an already built module (they use that one)::

        encoder = MODELS.build(dict(type='RAMImageEncoder', pretrained=path))
        scr = MODELS.build(dict(type='SemanticContrastiveLoss', encoder=encoder))
        per = MODELS.build(dict(type='RAMPerceptualLoss', encoder=encoder))

    Checkpoints: the weights come from ``pretrained`` only. With
    ``exclude_from_state_dict=True`` (default) this module leaves its weights
    out of any ``state_dict()`` that contains it (so a model holding it, maybe
    through two losses, does not save 0.8 GB per copy), and when such a
    state dict is loaded the encoder keeps its current weights (its keys are
    neither reported missing nor overwritten).

    Args:
        pretrained (str, optional): Local path of RAM's checkpoint
            (``ram_swin_large_14m.pth``: keys ``visual_encoder.*`` in the
            Microsoft Swin layout and ``image_proj.*``). None gives random
            weights (with a warning): only for tests and benchmarks.
        img_size (int): Input size of the encoder; inputs are resized to it
            (bilinear). Default: 384.
        patch_size (int): Patch size. Default: 4.
        embed_dim (int): Width of stage 1. Default: 192.
        depths (Sequence[int]): Blocks per stage. Default: (2, 2, 18, 2).
        num_heads (Sequence[int]): Heads per stage. Default: (6, 12, 24, 48).
        window_size (int): Attention window. Default: 12.
        mlp_ratio (float): MLP ratio of the blocks. Default: 4.0.
        proj_dim (int): Output width of the image projection. Default: 512.
        normalize (bool): Normalise the [0, 1] input with ImageNet mean/std
            before the encoder. Default: True, because RAM was trained (and is
            used upstream) on normalised images, so its features are only
            meaningful for such inputs. The Semi-LLIE authors' loss code feeds
            the [0, 1] images unnormalised; set False to reproduce that.
        weights_only (bool): ``torch.load(weights_only=...)`` for the
            checkpoint. Default: True (safe); set False only for a trusted file
            that needs it.
        exclude_from_state_dict (bool): See "Checkpoints" above. Default: True.
        with_tagging_head (bool): Also build RAM's tag decoder
            (:class:`RAMTaggingHead`, 2 cross-attention BERT layers, 4585 tags,
            ~16 M parameters) and load it from the checkpoint (``tagging_head.*``,
            ``label_embed``, ``wordvec_proj.*``, ``fc.*``), for
            :meth:`tag_logits`. Default: False.
        tagging_head (dict, optional): Arguments of :class:`RAMTaggingHead`
            (defaults: RAM's); its ``embed_dim`` is ``proj_dim``.
    """

    def __init__(self,
                 pretrained: Optional[str] = None,
                 img_size: int = 384,
                 patch_size: int = 4,
                 embed_dim: int = 192,
                 depths: Sequence[int] = (2, 2, 18, 2),
                 num_heads: Sequence[int] = (6, 12, 24, 48),
                 window_size: int = 12,
                 mlp_ratio: float = 4.0,
                 proj_dim: int = 512,
                 normalize: bool = True,
                 weights_only: bool = True,
                 exclude_from_state_dict: bool = True,
                 with_tagging_head: bool = False,
                 tagging_head: Optional[dict] = None) -> None:
        super().__init__()
        if len(depths) != len(num_heads):
            raise ValueError('depths and num_heads need one entry per stage, '
                             f'got {tuple(depths)} and {tuple(num_heads)}.')
        # Check the file before building the (large) network.
        if pretrained is not None and not osp.isfile(pretrained):
            raise FileNotFoundError(
                f'RAM checkpoint not found: {pretrained!r}. {RAM_WEIGHTS_HELP}')

        from timm.models.swin_transformer import SwinTransformer

        self.img_size = int(img_size)
        self.normalize = normalize
        self.num_stages = len(depths)
        self.swin = SwinTransformer(
            img_size=self.img_size,
            patch_size=patch_size,
            in_chans=3,
            num_classes=0,
            embed_dim=embed_dim,
            depths=tuple(depths),
            num_heads=tuple(num_heads),
            window_size=window_size,
            mlp_ratio=mlp_ratio,
            qkv_bias=True,
            drop_rate=0.0,
            proj_drop_rate=0.0,
            attn_drop_rate=0.0,
            drop_path_rate=0.0)
        self.out_channels: List[int] = [
            int(embed_dim * 2**i) for i in range(self.num_stages)
        ]
        self.image_proj = nn.Linear(self.out_channels[-1], proj_dim)
        self.tagging_head = None
        if with_tagging_head:
            self.tagging_head = RAMTaggingHead(
                **dict(tagging_head or {}, embed_dim=proj_dim))
        self._register_normalisation()

        self.pretrained = pretrained
        if pretrained is None:
            print_log(
                'RAMImageEncoder: no `pretrained` checkpoint given, the '
                'encoder has RANDOM weights: its features mean nothing. '
                f'{RAM_WEIGHTS_HELP}',
                logger='current',
                level=logging.WARNING)
        else:
            self.load_ram_checkpoint(pretrained, weights_only=weights_only)

        self._freeze(exclude_from_state_dict)

    # ------------------------------------------------------------------ weights
    def load_ram_checkpoint(self, path: str, weights_only: bool = True) -> None:
        """Load RAM's released checkpoint, strictly for the parts used.

        Args:
            path (str): Local path of ``ram_swin_large_14m.pth`` (or a file with
                the same key layout).
            weights_only (bool): Passed to :func:`torch.load`.

        Raises:
            FileNotFoundError: if ``path`` is not a file.
            KeyError: if a weight of the Swin encoder or of ``image_proj`` is
                missing from the file, or if the file has ``visual_encoder.*``
                / ``image_proj.*`` keys that the encoder does not have (wrong
                architecture settings); the message lists them.
            RuntimeError: if a tensor has the wrong shape.
        """
        if not osp.isfile(path):
            raise FileNotFoundError(
                f'RAM checkpoint not found: {path!r}. {RAM_WEIGHTS_HELP}')
        state_dict = _load_state_dict_file(path, weights_only=weights_only)
        swin_sd, proj_sd = convert_ram_checkpoint(state_dict, self.swin)
        # copy out of the (possibly memory-mapped) file
        swin_sd = {k: v.clone() for k, v in swin_sd.items()}
        proj_sd = {k: v.clone() for k, v in proj_sd.items()}

        parts = [(VISUAL_PREFIX, self.swin, swin_sd),
                 (PROJ_PREFIX, self.image_proj, proj_sd)]
        if self.tagging_head is not None:
            head_sd = {
                k: v.clone()
                for k, v in RAMTaggingHead.select_ram_keys(state_dict).items()
            }
            parts.append(('(tagging head) ', self.tagging_head, head_sd))
        missing: List[str] = []
        unexpected: List[str] = []
        for prefix, module, sd in parts:
            expected = set(module.state_dict().keys())
            missing += [prefix + k for k in sorted(expected - set(sd))]
            unexpected += [prefix + k for k in sorted(set(sd) - expected)]
        if missing or unexpected:
            lines = [f'RAM checkpoint {path!r} does not match the encoder '
                     '(after remapping to timm names; keys shown in timm\'s '
                     'layout):']
            if missing:
                lines.append(f'  missing ({len(missing)}): ' +
                             ', '.join(missing))
            if unexpected:
                lines.append(f'  unexpected ({len(unexpected)}): ' +
                             ', '.join(unexpected))
            lines.append('  Check that the architecture settings (embed_dim, '
                         'depths, num_heads, window_size, img_size, proj_dim) '
                         'are those of the checkpoint.')
            raise KeyError('\n'.join(lines))
        for _, module, sd in parts:
            module.load_state_dict(sd, strict=True)
        print_log(
            f'RAMImageEncoder: loaded {len(swin_sd)} Swin, {len(proj_sd)} '
            'image_proj' + (f' and {len(parts[2][2])} tagging-head'
                            if len(parts) > 2 else '') +
            f' tensors from {path}',
            logger='current')

    # ------------------------------------------------------------------ forward
    def forward(self, img: torch.Tensor) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        """Encode a batch of images.

        Args:
            img (Tensor): (B, 3, H, W), RGB in [0, 1]; resized to ``img_size``.

        Returns:
            tuple:

            - embeds (Tensor): RAM image embeddings ``image_proj(cat(mean of the
              tokens, tokens))`` after the final LayerNorm, shape
              (B, 1 + h * w, proj_dim): (B, 145, 512) for Swin-L/384.
            - feats (list[Tensor]): the output of the last block of every Swin
              stage, (B, C_i, H_i, W_i) (a channels-first view of timm's
              channels-last maps): 96^2 x 192, 48^2 x 384, 24^2 x 768 and
              12^2 x 1536 for Swin-L/384.
        """
        x = self.swin.patch_embed(self.preprocess(img))  # B, H, W, C
        feats = []
        for stage in self.swin.layers:
            x = stage(x)
            feats.append(x.permute(0, 3, 1, 2))
        x = self.swin.norm(x).flatten(1, 2)  # B, h*w, C
        tokens = torch.cat([x.mean(dim=1, keepdim=True), x], dim=1)
        return self.image_proj(tokens), feats


    def tag_logits(self, embeds: torch.Tensor) -> torch.Tensor:
        """RAM's tag logits from image embeddings (needs the tagging head).

        Args:
            embeds (Tensor): (B, N, proj_dim), the first output of
                :meth:`forward`.

        Returns:
            Tensor: (B, num_tags) logits (before the sigmoid).
        """
        if self.tagging_head is None:
            raise RuntimeError('RAMImageEncoder was built without the tagging '
                               'head: set with_tagging_head=True.')
        return self.tagging_head(embeds)


def build_ram_encoder(encoder: Union[dict, nn.Module, None]) -> nn.Module:
    """Return ``encoder`` if it is a module, else build it from its config.

    Args:
        encoder (dict | nn.Module): A config of :class:`RAMImageEncoder` (or of
            any registered module with the same ``forward`` contract) or an
            already built encoder, which is then shared, not copied.

    Returns:
        nn.Module: The encoder.
    """
    if isinstance(encoder, nn.Module):
        return encoder
    if isinstance(encoder, dict):
        return MODELS.build(encoder)
    raise TypeError(
        'encoder must be a config dict such as dict(type="RAMImageEncoder", '
        'pretrained="path/to/ram_swin_large_14m.pth") or a built encoder '
        f'module, got {type(encoder).__name__}.')
