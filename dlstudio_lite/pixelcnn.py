"""PixelCNN: an autoregressive prior over a grid of code indices, with masked convolutions.

A masked convolution is an ordinary ``nn.Conv2d`` whose kernel is multiplied by a fixed
0/1 mask before every use, so that the output at a position depends only on positions that
come *earlier* in raster order (rows top to bottom, left to right within a row).

* **type A** (first layer): the centre tap is masked too, so the output at a position never
  sees the value it must predict;
* **type B** (every later layer): the centre tap is kept; the centre of a later layer holds
  features computed from earlier positions only, so keeping it leaks nothing.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

MASK_TYPES = ("A", "B")


def causal_mask(kernel_size: int, mask_type: str) -> torch.Tensor:
    """The ``(k, k)`` 0/1 float mask of a masked convolution with an odd ``kernel_size`` k.

    Ones above the centre row, and left of the centre in the centre row; the centre itself
    is 1 for type ``"B"`` and 0 for type ``"A"``.
    """
    if not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be a positive odd integer, got {kernel_size!r}")
    if mask_type not in MASK_TYPES:
        raise ValueError(f"mask_type must be one of {MASK_TYPES}, got {mask_type!r}")
    c = kernel_size // 2
    mask = torch.zeros(kernel_size, kernel_size)
    mask[:c, :] = 1.0
    mask[c, :c] = 1.0
    if mask_type == "B":
        mask[c, c] = 1.0
    return mask


class MaskedConv2d(nn.Conv2d):
    """``nn.Conv2d`` with a :func:`causal_mask` applied to its kernel; ``(B, C, H, W)`` in and out
    with 'same' padding."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, mask_type: str,
                 bias: bool = True):
        super().__init__(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=bias)
        self.mask_type = mask_type
        self.register_buffer("mask", causal_mask(kernel_size, mask_type), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)
