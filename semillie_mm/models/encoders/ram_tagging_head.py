# Copyright (c) semillie-mm contributors.
"""RAM's image-tag recognition decoder (the "tagging head"), for tag logits.

RAM recognises tags with a Query2Label-style decoder: one learned query per tag
(``label_embed``, 4585 x 512, projected to 768 by ``wordvec_proj`` and a ReLU)
attends to the image embeddings through two BERT layers that have *only*
cross-attention (their self-attention is removed), and a linear ``fc`` maps each
query to one logit. The Semi-LLIE authors use these logits as a second term of
the semantic contrastive loss.

The parameter names mirror RAM's file (``tagging_head.encoder.layer.i.
crossattention.self.query`` ...), so its tensors load without renaming.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class _CrossAttentionLayer(nn.Module):
    """One BERT layer in RAM's 'tagging' mode: cross-attention, then the MLP.

    Args:
        hidden_size (int): Width of the tag queries.
        encoder_width (int): Width of the image embeddings (keys / values).
        num_heads (int): Attention heads.
        intermediate_size (int): Hidden width of the MLP.
        layer_norm_eps (float): LayerNorm epsilon.
    """

    def __init__(self, hidden_size: int, encoder_width: int, num_heads: int,
                 intermediate_size: int, layer_norm_eps: float) -> None:
        super().__init__()
        if hidden_size % num_heads:
            raise ValueError(f'hidden_size {hidden_size} is not a multiple of '
                             f'num_heads {num_heads}')
        self.num_heads = num_heads
        self.crossattention = nn.ModuleDict(
            dict(
                self=nn.ModuleDict(
                    dict(
                        query=nn.Linear(hidden_size, hidden_size),
                        key=nn.Linear(encoder_width, hidden_size),
                        value=nn.Linear(encoder_width, hidden_size))),
                output=nn.ModuleDict(
                    dict(
                        dense=nn.Linear(hidden_size, hidden_size),
                        LayerNorm=nn.LayerNorm(
                            hidden_size, eps=layer_norm_eps)))))
        self.intermediate = nn.ModuleDict(
            dict(dense=nn.Linear(hidden_size, intermediate_size)))
        self.output = nn.ModuleDict(
            dict(
                dense=nn.Linear(intermediate_size, hidden_size),
                LayerNorm=nn.LayerNorm(hidden_size, eps=layer_norm_eps)))

    def forward(self, x: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        """Args: x (B, K, hidden) queries; memory (B, N, encoder_width).

        Returns:
            Tensor: (B, K, hidden).
        """
        att = self.crossattention['self']
        b, k, c = x.shape
        h, d = self.num_heads, c // self.num_heads
        q = att['query'](x).view(b, k, h, d).transpose(1, 2)
        key = att['key'](memory).view(b, -1, h, d).transpose(1, 2)
        val = att['value'](memory).view(b, -1, h, d).transpose(1, 2)
        probs = (q @ key.transpose(-1, -2) / math.sqrt(d)).softmax(dim=-1)
        ctx = (probs @ val).transpose(1, 2).reshape(b, k, c)
        out = self.crossattention['output']
        x = out['LayerNorm'](out['dense'](ctx) + x)
        y = F.gelu(self.intermediate['dense'](x))
        return self.output['LayerNorm'](self.output['dense'](y) + x)


class RAMTaggingHead(nn.Module):
    """RAM's tag decoder: image embeddings (B, N, 512) -> tag logits (B, K).

    Defaults are RAM's (``q2l_config``: 2 layers, hidden 768, 4 heads, MLP
    3072, LayerNorm eps 1e-12; 4585 tags; image embeddings of width 512).

    Args:
        num_tags (int): Number of tags K. Default: 4585.
        embed_dim (int): Width of the image embeddings and of ``label_embed``.
            Default: 512.
        hidden_size (int): Width of the decoder. Default: 768.
        num_layers (int): Decoder layers. Default: 2.
        num_heads (int): Attention heads. Default: 4.
        intermediate_size (int): MLP width. Default: 3072.
        layer_norm_eps (float): LayerNorm epsilon. Default: 1e-12.
    """

    def __init__(self,
                 num_tags: int = 4585,
                 embed_dim: int = 512,
                 hidden_size: int = 768,
                 num_layers: int = 2,
                 num_heads: int = 4,
                 intermediate_size: int = 3072,
                 layer_norm_eps: float = 1e-12) -> None:
        super().__init__()
        self.label_embed = nn.Parameter(torch.zeros(num_tags, embed_dim))
        # RAM projects the tag embeddings only when the widths differ
        self.wordvec_proj = (
            nn.Linear(embed_dim, hidden_size)
            if hidden_size != embed_dim else nn.Identity())
        self.encoder = nn.Module()
        self.encoder.layer = nn.ModuleList([
            _CrossAttentionLayer(hidden_size, embed_dim, num_heads,
                                 intermediate_size, layer_norm_eps)
            for _ in range(num_layers)
        ])
        self.fc = nn.Linear(hidden_size, 1)

    def forward(self, image_embeds: torch.Tensor) -> torch.Tensor:
        """Compute tag logits (before the sigmoid).

        Args:
            image_embeds (Tensor): (B, N, embed_dim) RAM image embeddings.

        Returns:
            Tensor: (B, num_tags) logits.
        """
        queries = F.relu(self.wordvec_proj(self.label_embed))
        x = queries.unsqueeze(0).expand(image_embeds.size(0), -1, -1)
        for layer in self.encoder.layer:
            x = layer(x, image_embeds)
        return self.fc(x).squeeze(-1)

    @staticmethod
    def select_ram_keys(state_dict: dict) -> dict:
        """Pick the tagging-head tensors out of RAM's state dict.

        RAM stores them as ``tagging_head.*`` (older files: ``vision_multi.*``,
        which RAM renames on load), ``label_embed``, ``wordvec_proj.*`` and
        ``fc.*``.

        Args:
            state_dict (dict): RAM's full state dict.

        Returns:
            dict: Keys in this module's naming.
        """
        out = {}
        for k, v in state_dict.items():
            for prefix in ('tagging_head.', 'vision_multi.'):
                if k.startswith(prefix):
                    out[k[len(prefix):]] = v
            if k == 'label_embed' or k.startswith(('wordvec_proj.', 'fc.')):
                out[k] = v
        return out
