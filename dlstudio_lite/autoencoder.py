"""The lecture's Autoencoder: an ``Encoder`` and a ``Decoder`` built from SkipBlocks.

The encoder maps ``(B, C, H, W)`` images to a ``(B, C_out, h, w)`` feature map with
``H / h`` = 2, 4 or 8; the decoder mirrors it. VAE, VQ-VAE and VQGAN reuse both classes.

Layout for downsampling ratio ``2**n`` (lecture defaults ``base_channels=64``):

    3x3 conv C -> base, ReLU
    n stages, each:  SkipBlockEncoder(c, c, downsample)  -> num_repeats x SkipBlockEncoder(c, c)
                     -> SkipBlockEncoder(c, 2c)           (c = base, 2 base, 4 base, ...)

so the output has ``base * 2**n`` channels: 128 / 256 / 512 for ratios 2 / 4 / 8, as in
DLStudio. The decoder mirrors it; its own ``num_repeats`` (a VQ-VAE's ``decoder_repeats``)
adds same-width blocks after each upsampling, and its ``attention`` a self-attention block
after the first block, at the latent resolution. Unlike DLStudio, misconfigurations raise
``ValueError`` instead of ``sys.exit``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import SelfAttention2d, SkipBlockDecoder, SkipBlockEncoder
from .config import records_hparams

SUPPORTED_RATIOS = (2, 4, 8)


def num_stages(image_size: int, latent_size: int) -> int:
    """Number of halvings from ``image_size`` to ``latent_size`` (1, 2 or 3)."""
    if latent_size < 1 or image_size % latent_size != 0:
        raise ValueError(f"image_size must be a multiple of latent_size: got image_size="
                         f"{image_size}, latent_size={latent_size}")
    ratio = image_size // latent_size
    if ratio not in SUPPORTED_RATIOS:
        raise ValueError(f"downsampling ratio image_size/latent_size must be one of "
                         f"{SUPPORTED_RATIOS}, got {image_size}/{latent_size} = {ratio}")
    return ratio.bit_length() - 1


def check_shape(x: torch.Tensor, expected: tuple, who: str) -> None:
    """Raise ``ValueError`` unless ``x`` is ``(B, *expected)``."""
    if x.dim() != 1 + len(expected) or tuple(x.shape[1:]) != tuple(expected):
        want = "(B, " + ", ".join(str(s) for s in expected) + ")"
        raise ValueError(f"{who} expected input of shape {want}, got {tuple(x.shape)}")


class Encoder(nn.Module):
    """``(B, in_channels, S, S) -> (B, out_channels, s, s)`` with ``S = image_size``,
    ``s = latent_size``; ``out_channels = base_channels * S // s``."""

    def __init__(self, in_channels: int = 3, image_size: int = 64, latent_size: int = 16,
                 base_channels: int = 64, num_repeats: int = 0, skip_connections: bool = True):
        super().__init__()
        stages = num_stages(image_size, latent_size)
        if num_repeats < 0:
            raise ValueError(f"num_repeats must be >= 0, got {num_repeats}")
        self.in_channels, self.image_size, self.latent_size = in_channels, image_size, latent_size
        self.conv_in = nn.Conv2d(in_channels, base_channels, 3, padding=1)
        blocks, c = [], base_channels
        for _ in range(stages):
            blocks.append(SkipBlockEncoder(c, c, downsample=True, skip_connections=skip_connections))
            blocks += [SkipBlockEncoder(c, c, skip_connections=skip_connections)
                       for _ in range(num_repeats)]
            blocks.append(SkipBlockEncoder(c, 2 * c, skip_connections=skip_connections))
            c *= 2
        self.blocks = nn.Sequential(*blocks)
        self.out_channels = c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_shape(x, (self.in_channels, self.image_size, self.image_size), "Encoder")
        return self.blocks(F.relu(self.conv_in(x)))


class Decoder(nn.Module):
    """``(B, in_channels, s, s) -> (B, out_channels, S, S)``, the mirror of ``Encoder``.

    ``in_channels`` is ``base_channels * S // s``. Ends in a 3x3 conv to the image
    channels with no output activation (targets are in [-1, 1]; MSE needs no squashing).
    ``num_repeats`` extra same-width SkipBlocks follow each upsampling, so the added depth
    works at the finer resolution, where outlines are drawn. ``attention`` adds a
    ``SelfAttention2d`` after the first block, at the latent resolution (where it is cheap:
    64 positions for an 8x8 grid).
    """

    def __init__(self, out_channels: int = 3, image_size: int = 64, latent_size: int = 16,
                 base_channels: int = 64, skip_connections: bool = True, num_repeats: int = 0,
                 attention: bool = False):
        super().__init__()
        stages = num_stages(image_size, latent_size)
        if num_repeats < 0:
            raise ValueError(f"decoder num_repeats must be >= 0, got {num_repeats}")
        self.out_channels, self.image_size, self.latent_size = out_channels, image_size, latent_size
        self.in_channels = base_channels * 2 ** stages
        blocks, c = [], self.in_channels
        for _ in range(stages):
            blocks.append(SkipBlockDecoder(c, c // 2, skip_connections=skip_connections))
            c //= 2
            if attention and len(blocks) == 1:
                blocks.append(SelfAttention2d(c))
            blocks.append(SkipBlockDecoder(c, c, upsample=True, skip_connections=skip_connections))
            blocks += [SkipBlockDecoder(c, c, skip_connections=skip_connections)
                       for _ in range(num_repeats)]
        self.blocks = nn.Sequential(*blocks)
        self.conv_out = nn.Conv2d(base_channels, out_channels, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        check_shape(z, (self.in_channels, self.latent_size, self.latent_size), "Decoder")
        return self.conv_out(self.blocks(z))


class Autoencoder(nn.Module):
    """Deterministic autoencoder; loss = mean squared error per pixel.

    ``encode``: ``(B, C, S, S) -> (B, base * S/s, s, s)``; ``decode`` the reverse.

    Args:
        in_channels: image channels (3 for RGB, 1 for MNIST)
        image_size, latent_size: sides of the image and of the latent grid (ratio 2, 4 or 8)
        base_channels: width of the first encoder stage (doubled at every halving)
        num_repeats: extra same-width SkipBlocks per encoder stage
        skip_connections: keep the SkipBlocks' identity paths
    """

    @records_hparams
    def __init__(self, in_channels: int = 3, image_size: int = 64, latent_size: int = 16,
                 base_channels: int = 64, num_repeats: int = 0, skip_connections: bool = True):
        super().__init__()
        self.encoder = Encoder(in_channels, image_size, latent_size, base_channels, num_repeats,
                               skip_connections)
        self.decoder = Decoder(in_channels, image_size, latent_size, base_channels,
                               skip_connections)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self(x)

    def compute_loss(self, x: torch.Tensor):
        """Returns ``(loss, {"recon": ...})``; loss is the per-pixel MSE."""
        recon = F.mse_loss(self(x), x)
        return recon, {"recon": recon.detach()}
