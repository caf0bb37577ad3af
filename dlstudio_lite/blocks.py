"""SkipBlocks: the residual building blocks of the lecture's encoders and decoders.

They follow DLStudio 2.5.5 (lecture section 4): 3x3 convolutions, each followed by
GroupNorm and ReLU, plus an identity ("skip") path that is added back at the end.

* ``SkipBlockEncoder`` halves the resolution with a strided 1x1 convolution applied to
  both the main path and the identity, and may double the channels (the identity is then
  concatenated with itself so the two paths can be added).
* ``SkipBlockDecoder`` doubles the resolution with nearest-neighbour upsampling of both
  paths, and may halve the channels (the identity is then sliced to the first half).

Changing resolution and width happen in separate blocks, as in the lecture, which keeps
each skip connection a plain identity (no learned projection).

``SelfAttention2d`` is not in the lecture: it is the block taming-transformers' VQGAN puts
at its decoder's lowest resolution, an option here (``VQVAE(decoder_attention=True)``).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with up to 32 groups; the group count always divides ``channels``.

    The lecture uses 32 groups, which fails for 16 or 48 channels; ``gcd(32, channels)``
    gives 32 for the usual widths and still works for small course models.
    """
    return nn.GroupNorm(math.gcd(32, channels), channels)


class SkipBlockEncoder(nn.Module):
    """Residual block of the encoder: ``(B, in_ch, H, W) -> (B, out_ch, H', W')``.

    ``H' = H // 2`` when ``downsample`` else ``H``. ``out_ch`` must equal ``in_ch`` or
    ``2 * in_ch``; downsampling blocks keep the width (``in_ch == out_ch``).
    """

    def __init__(self, in_ch: int, out_ch: int, downsample: bool = False,
                 skip_connections: bool = True):
        super().__init__()
        if out_ch not in (in_ch, 2 * in_ch):
            raise ValueError(f"SkipBlockEncoder keeps or doubles the channels: expected out_ch "
                             f"{in_ch} or {2 * in_ch}, got {out_ch}")
        if downsample and out_ch != in_ch:
            raise ValueError(f"a downsampling SkipBlockEncoder keeps the width: expected "
                             f"out_ch == in_ch == {in_ch}, got out_ch={out_ch}")
        self.in_ch, self.out_ch = in_ch, out_ch
        self.downsample, self.skip_connections = downsample, skip_connections
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.norm1 = group_norm(out_ch)
        # The second conv exists only in same-width blocks (as in the lecture's package).
        if in_ch == out_ch:
            self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
            self.norm2 = group_norm(out_ch)
        if downsample:
            # One strided 1x1 conv shared by both paths, so they stay aligned pixel for pixel.
            self.downsampler = nn.Conv2d(in_ch, out_ch, 1, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = F.relu(self.norm1(self.conv1(x)))
        if self.in_ch == self.out_ch:
            out = F.relu(self.norm2(self.conv2(out)))
        if self.downsample:
            out = self.downsampler(out)
            identity = self.downsampler(identity)
        if self.skip_connections:
            if self.out_ch == 2 * self.in_ch:
                identity = torch.cat([identity, identity], dim=1)
            out = out + identity
        return out


class SkipBlockDecoder(nn.Module):
    """Residual block of the decoder: ``(B, in_ch, H, W) -> (B, out_ch, H', W')``.

    ``H' = 2 * H`` when ``upsample`` else ``H``. ``out_ch`` must equal ``in_ch`` or
    ``in_ch // 2``. A final 3x3 conv + GroupNorm + ReLU follows the skip addition.
    """

    def __init__(self, in_ch: int, out_ch: int, upsample: bool = False,
                 skip_connections: bool = True):
        super().__init__()
        if not (out_ch == in_ch or 2 * out_ch == in_ch):
            raise ValueError(f"SkipBlockDecoder keeps or halves the channels: expected out_ch "
                             f"{in_ch} or {in_ch // 2} (with in_ch even), got {out_ch}")
        self.in_ch, self.out_ch = in_ch, out_ch
        self.upsample, self.skip_connections = upsample, skip_connections
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.norm1 = group_norm(out_ch)
        if in_ch == out_ch:
            self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
            self.norm2 = group_norm(out_ch)
        self.conv_final = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.norm_final = group_norm(out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = F.relu(self.norm1(self.conv1(x)))
        if self.in_ch == self.out_ch:
            out = F.relu(self.norm2(self.conv2(out)))
        if self.upsample:
            out = F.interpolate(out, scale_factor=2, mode="nearest")
            identity = F.interpolate(identity, scale_factor=2, mode="nearest")
        if self.skip_connections:
            out = out + identity[:, : self.out_ch]  # halving: keep the first half of the identity
        return F.relu(self.norm_final(self.conv_final(out)))


class SelfAttention2d(nn.Module):
    """Self-attention over the positions of a feature map, added back to its input:
    ``(B, C, H, W) -> (B, C, H, W)``.

    A 3x3 convolution mixes a position with its neighbours only; here every position takes
    a weighted mean of all positions' values, weighted by how alike their features are, so
    the codes of one shape could agree on its colour however far apart they lie (appendix 11
    measures whether that raises the flat-shape check).
    """

    def __init__(self, channels: int, num_heads: int = 1):
        super().__init__()
        self.norm = group_norm(channels)
        self.attn = nn.MultiheadAttention(channels, num_heads, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        tokens = self.norm(x).flatten(2).transpose(1, 2)          # (B, H*W, C)
        mixed, _ = self.attn(tokens, tokens, tokens, need_weights=False)
        return x + mixed.transpose(1, 2).reshape(b, c, h, w)
