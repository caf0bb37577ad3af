"""Evaluation, in one place: eval mode that restores itself, one loop over a test split,
and the reconstruction picture.

``evaluate(model, data, measure)`` averages what ``measure(model, x)`` returns over the
batches of ``data`` (weighted by batch size), in eval mode, without gradients and under a
forked, fixed-seed RNG, so a VAE's sampling noise neither changes the training run's random
stream nor makes two evaluations differ. Two measures ship: :class:`LossLogs` (the model's
``compute_loss`` logs; what the trainer records as ``test/...``) and
:class:`Reconstruction` (MSE, PSNR and, for VQ models, the code usage of the whole split).
:func:`latent_rate` measures how many bits per image a model's latent carries, so that a VAE
and a VQ-VAE can be compared at the same rate.
"""
from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from .data import images_of
from .metrics import psnr
from .quantize import code_counts, code_usage
from .vae import kl_divergence


@contextlib.contextmanager
def evaluating(model: nn.Module, seed: int | None = None) -> Iterator[nn.Module]:
    """Eval mode inside the block, the previous mode after it (also on errors).

    With ``seed``, the block also runs under a forked RNG seeded with it: repeatable, and
    the caller's random stream is left where it was.
    """
    was_training = model.training
    model.eval()
    try:
        if seed is None:
            yield model
        else:
            devices = [torch.cuda.current_device()] if torch.cuda.is_initialized() else []
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed(seed)
                yield model
    finally:
        model.train(was_training)


class LossLogs:
    """``compute_loss``'s logs and loss (the model protocol of docs/DESIGN.md)."""

    def __call__(self, model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
        loss, logs = model.compute_loss(x)
        return {**logs, "loss": loss}

    def finish(self, means: dict[str, float], count: int) -> dict[str, float]:
        return means


class Reconstruction:
    """MSE per pixel (in [-1, 1]) and PSNR (dB, per image) of ``reconstruct``; VQ models
    add ``perplexity`` and ``codebook_usage`` from the code histogram of the whole split
    (not averaged over batches); a model with several code grids (``code_counts(x)`` giving
    ``{level: counts}``, e.g. VQ-VAE-2) gets ``perplexity_LEVEL`` and ``codebook_usage_LEVEL``."""

    def __init__(self):
        self.counts: dict[str, torch.Tensor] = {}

    def __call__(self, model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x_hat = model.reconstruct(x).float()
        if hasattr(model, "code_counts"):  # several code grids, one histogram each
            levels = {f"_{k}": v for k, v in model.code_counts(x).items()}
        elif hasattr(model, "encode_to_indices"):  # a VQ model
            levels = {"": code_counts(model.encode_to_indices(x), model.num_codes)}
        else:
            levels = {}
        for key, counts in levels.items():
            self.counts[key] = self.counts[key] + counts if key in self.counts else counts
        return {"mse": (x_hat - x).pow(2).mean(), "psnr": psnr(x_hat, x)}

    def finish(self, means: dict[str, float], count: int) -> dict[str, float]:
        out = {**means, "num_images": count}
        for key, counts in self.counts.items():
            usage = code_usage(counts)
            out.update({f"perplexity{key}": float(usage.perplexity),
                        f"codebook_usage{key}": float(usage.usage)})
        return out


class LatentRate:
    """Bits per image in the latent (see :func:`latent_rate`): ``kl_bits`` for a VAE, the
    code histogram of the whole split for a VQ model."""

    def __init__(self):
        self.counts: torch.Tensor | None = None

    def __call__(self, model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if hasattr(model, "encode_to_indices"):                 # a VQ model
            indices = model.encode_to_indices(x)                # (B, h, w)
            counts = code_counts(indices, model.num_codes)
            self.counts = counts if self.counts is None else self.counts + counts
            return {"grid_cells": torch.tensor(float(indices[0].numel()))}
        latent = model.encode(x) if hasattr(model, "encode") else None
        if not (isinstance(latent, tuple) and len(latent) == 2):
            raise TypeError(f"latent_rate needs a VQ model (with encode_to_indices) or a VAE whose "
                            f"encode returns (mu, logvar), got a {type(model).__name__} whose encode "
                            f"returns {type(latent).__name__}")
        return {"kl_bits": kl_divergence(*latent).mean() / math.log(2)}

    def finish(self, means: dict[str, float], count: int) -> dict[str, float]:
        if self.counts is None:
            return {"bits_per_image": means["kl_bits"]}
        usage = code_usage(self.counts)
        cells = int(means["grid_cells"])
        return {"bits_per_image": float(usage.bits) * cells, "bits_per_code": float(usage.bits),
                "grid_cells": cells, "perplexity": float(usage.perplexity)}


@torch.no_grad()
def evaluate(model: nn.Module, data: Dataset, measure=None, *, batch_size: int = 64,
             max_batches: int | None = None, seed: int = 0,
             to_device: Callable[[torch.Tensor], torch.Tensor] | None = None,
             autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext
             ) -> dict[str, float]:
    """Mean of ``measure(model, x)`` over ``data`` (default measure: :class:`LossLogs`).

    ``to_device`` moves a batch (default: to the model's device); ``autocast`` makes the
    precision context. Returns ``{}`` for an empty dataset.
    """
    measure = measure if measure is not None else LossLogs()
    if to_device is None:
        device = next(model.parameters()).device
        to_device = lambda x: x.to(device)  # noqa: E731
    sums: dict[str, torch.Tensor] = {}
    count = 0
    with evaluating(model, seed=seed):
        for i, batch in enumerate(DataLoader(data, batch_size=batch_size, shuffle=False)):
            if max_batches is not None and i >= max_batches:
                break
            x = to_device(images_of(batch))
            with autocast():
                values = measure(model, x)
            for k, v in values.items():
                v = torch.as_tensor(v).detach().float().reshape(()) * x.shape[0]
                sums[k] = sums[k] + v if k in sums else v
            count += x.shape[0]
    if count == 0:
        return {}
    keys = list(sums)
    # One stack + one tolist: a single device-to-host copy for all the values.
    values = torch.stack([sums[k].to(sums[keys[0]].device) for k in keys]).tolist()
    return measure.finish({k: v / count for k, v in zip(keys, values)}, count)


def reconstruction_metrics(model: nn.Module, data: Dataset, device: torch.device | str = "cpu",
                           batch_size: int = 64, max_batches: int | None = None
                           ) -> dict[str, float]:
    """:func:`evaluate` with the :class:`Reconstruction` measure; raises on empty data."""
    device = torch.device(device)
    out = evaluate(model, data, Reconstruction(), batch_size=batch_size,
                   max_batches=max_batches, to_device=lambda x: x.to(device))
    if not out:
        raise ValueError("reconstruction_metrics got an empty dataset")
    return out


def latent_rate(model: nn.Module, data: Dataset, batch_size: int = 64,
                max_batches: int | None = None) -> dict[str, float]:
    """How many bits per image the latent of ``model`` carries, on ``data``.

    * VAE: the KL divergence of the posterior from the prior, in bits, averaged over images
      (the price, under the prior, of sending the latent; the rate term of the ELBO).
    * VQ model: the entropy of the code histogram of the whole split, in bits per code, times
      the number of cells of the code grid (``h * w``): what an ideal coder that knows only
      how often each code occurs needs. At most ``h * w * log2(K)``.

    Returns ``{"bits_per_image": ...}``; VQ models add ``bits_per_code``, ``grid_cells`` and
    ``perplexity``. Raises ``ValueError`` on empty data.
    """
    out = evaluate(model, data, LatentRate(), batch_size=batch_size, max_batches=max_batches)
    if not out:
        raise ValueError("latent_rate got an empty dataset")
    return out


@torch.no_grad()
def save_reconstructions(model: nn.Module, data: Dataset, path: str | os.PathLike, n: int = 8,
                         seed: int = 0, to_device=None,
                         autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext
                         ) -> Path:
    """Save a PNG grid: the first ``n`` images of ``data`` (top row) over their
    reconstructions (bottom row)."""
    from torchvision.utils import save_image
    x = torch.stack([images_of(data[i]) for i in range(min(n, len(data)))])
    if to_device is None:
        device = next(model.parameters()).device
        to_device = lambda t: t.to(device)  # noqa: E731
    with evaluating(model, seed=seed), autocast():
        x_hat = model.reconstruct(to_device(x)).float().cpu()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # [-1, 1] -> [0, 1]; save_image clamps what the decoder overshoots.
    save_image((torch.cat([x, x_hat]) + 1) / 2, path, nrow=len(x), padding=2)
    return path
