"""Image metrics for images in [-1, 1] (the course's convention); the evaluation loop
over a dataset is ``evaluate.py``."""
from __future__ import annotations

import math

import torch


def mse(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean squared error over all elements (a scalar tensor)."""
    if x.shape != y.shape:
        raise ValueError(f"mse needs tensors of equal shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    return (x.float() - y.float()).pow(2).mean()


def psnr(x: torch.Tensor, y: torch.Tensor, data_range: float = 2.0) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB, averaged over the batch.

    ``x, y``: ``(B, C, H, W)`` in [-1, 1], so the default ``data_range`` (max - min) is 2.
    PSNR is computed per image and then averaged over the batch (the usual convention);
    a perfect reconstruction gives ``inf``.
    """
    if x.shape != y.shape or x.dim() != 4:
        raise ValueError(f"psnr expects two (B, C, H, W) tensors of equal shape, got "
                         f"{tuple(x.shape)} and {tuple(y.shape)}")
    per_image = (x.float() - y.float()).pow(2).flatten(1).mean(1)
    return (10 * torch.log10(data_range ** 2 / per_image)).mean()


def bits_per_dim(nll_nats: torch.Tensor, num_dims: int, data_range: float = 2.0,
                 levels: int = 256) -> torch.Tensor:
    """Convert a negative log-likelihood (in nats, per image) to bits per dimension.

    ``nll_nats`` is a continuous density's NLL for data scaled to a range of width
    ``data_range`` ([-1, 1] here). Papers report bits/dim for 8-bit data, i.e. on a
    scale where one intensity level has width 1; rescaling the data by ``levels /
    data_range`` subtracts ``num_dims * log(levels / data_range)`` from the log-density,
    hence the shift below. (Without uniform dequantisation noise this is an approximation.)
    """
    nll_8bit = nll_nats + num_dims * math.log(levels / data_range)
    return nll_8bit / (num_dims * math.log(2))
