"""Evaluation helpers for images in [-1, 1] (the course's convention)."""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset


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


@torch.no_grad()
def reconstruction_metrics(model: nn.Module, data: Dataset, device: torch.device | str = "cpu",
                           batch_size: int = 64, max_batches: int | None = None
                           ) -> dict[str, float]:
    """MSE (per pixel, in [-1, 1]) and PSNR (dB, per image, averaged) of ``reconstruct``
    over ``data``; VQ models add the perplexity and the fraction of codes used, both from
    the code histogram of the whole split (not averaged over batches)."""
    device = torch.device(device)
    was_training = model.training
    model.eval()
    sq_err, psnr_sum, count = 0.0, 0.0, 0
    num_codes = getattr(model, "num_codes", None)
    counts = torch.zeros(num_codes, dtype=torch.long, device=device) if num_codes else None
    loader = DataLoader(data, batch_size=batch_size, shuffle=False)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(0)
        for i, batch in enumerate(loader):
            if max_batches is not None and i >= max_batches:
                break
            x = (batch[0] if isinstance(batch, (tuple, list)) else batch).to(device)
            x_hat = model.reconstruct(x).float()
            n = x.shape[0]
            sq_err += (x_hat - x).pow(2).mean().item() * n
            psnr_sum += psnr(x_hat, x).item() * n
            count += n
            if counts is not None:
                counts += torch.bincount(model.encode_to_indices(x).flatten(),
                                         minlength=num_codes)
    model.train(was_training)
    if count == 0:
        raise ValueError("reconstruction_metrics got an empty dataset")
    out = {"mse": sq_err / count, "psnr": psnr_sum / count, "num_images": count}
    if counts is not None:
        p = counts.double() / counts.sum()
        entropy = -(p[p > 0] * p[p > 0].log()).sum()
        out["perplexity"] = float(entropy.exp())
        out["codebook_usage"] = float((counts > 0).double().mean())
    return out
