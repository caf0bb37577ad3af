"""Codebook upkeep: the nearest-code search, k-means and the :class:`Maintenance` options
(k-means start, dead-code restart) that every codebook quantizer can use, DDP-aware."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.distributed as dist

from .base import code_counts

if TYPE_CHECKING:
    from .codebook import CodebookQuantizer


@torch.no_grad()
def nearest_codes(z: torch.Tensor, codebook: torch.Tensor, chunk_elements: int = 2 ** 24):
    """Index of the nearest code for each row of ``z``: ``(N, D), (K, D) -> (N,)`` long.

    Uses ``||z - e||^2 = ||z||^2 - 2 z.e + ||e||^2`` in fp32, dropping ``||z||^2`` (the
    same for every code). At most ``chunk_elements`` distances are held at once.
    """
    device_type = z.device.type
    with torch.autocast(device_type=device_type, enabled=False):
        z, codebook = z.float(), codebook.float()
        e_sq = codebook.pow(2).sum(1)
        rows = max(1, chunk_elements // codebook.shape[0])
        out = torch.empty(z.shape[0], dtype=torch.long, device=z.device)
        for start in range(0, z.shape[0], rows):
            chunk = z[start:start + rows]
            dist_ = torch.addmm(e_sq, chunk, codebook.t(), alpha=-2.0)  # (n, K)
            out[start:start + rows] = dist_.argmin(1)
        return out


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def _all_reduce_(t: torch.Tensor) -> torch.Tensor:
    if _distributed():
        dist.all_reduce(t)
    return t


def _broadcast_(t: torch.Tensor) -> torch.Tensor:
    """Make every rank hold rank 0's values (so random re-initialisations agree)."""
    if _distributed():
        dist.broadcast(t, src=0)
    return t


@torch.no_grad()
def kmeans(z: torch.Tensor, num_codes: int, iters: int = 10) -> torch.Tensor:
    """Lloyd's k-means on ``(N, D)`` rows; returns ``(K, D)`` centres.

    Starts from K random *distinct* rows (repeating some only if fewer than K exist): image
    latents hold many identical background vectors, and codes started on the same vector
    stay together, wasted. An empty cluster keeps its centre.
    """
    z = z.float()
    distinct = torch.unique(z, dim=0)
    if distinct.shape[0] >= num_codes:
        pick = torch.randperm(distinct.shape[0], device=z.device)[:num_codes]
    else:
        pick = torch.randint(0, distinct.shape[0], (num_codes,), device=z.device)
    centres = distinct[pick].clone()
    for _ in range(iters):
        idx = nearest_codes(z, centres)
        counts = code_counts(idx, num_codes).float()
        sums = torch.zeros_like(centres).index_add_(0, idx, z)
        filled = counts > 0
        centres[filled] = sums[filled] / counts[filled, None]
    return centres


# --- maintenance: independent of the update rule --------------------------------------------

@dataclass(frozen=True)
class Maintenance:
    """Codebook upkeep that any update rule can use (training mode only).

    kmeans_init: on the first training batch, set the codebook by k-means on that batch.
    kmeans_iters: Lloyd iterations of that k-means.
    dead_code_steps: if > 0, a code unused for this many training steps is reset to a
        random encoder vector of the current batch (0 = never).
    """
    kmeans_init: bool = False
    kmeans_iters: int = 10
    dead_code_steps: int = 0

    @torch.no_grad()
    def start(self, quantizer: "CodebookQuantizer", z: torch.Tensor) -> None:
        """k-means start on the rows ``z (N, D)`` (the same centres on every DDP rank)."""
        centres = _broadcast_(kmeans(z, quantizer.num_codes, self.kmeans_iters))
        quantizer.set_codes(torch.ones(quantizer.num_codes, dtype=torch.bool, device=z.device),
                            centres)
        quantizer.initialized.fill_(True)

    @torch.no_grad()
    def restart_dead_codes(self, quantizer: "CodebookQuantizer", z: torch.Tensor,
                           counts: torch.Tensor) -> None:
        if self.dead_code_steps <= 0:
            return
        quantizer.steps_unused.add_(1).masked_fill_(counts > 0, 0)
        dead = quantizer.steps_unused >= self.dead_code_steps
        n_dead = int(dead.sum())
        if n_dead == 0:
            return
        pick = torch.randint(0, z.shape[0], (n_dead,), device=z.device)
        quantizer.set_codes(dead, _broadcast_(z[pick].clone()))
        quantizer.steps_unused[dead] = 0


# The maintenance every quantizer and VQ model gets by default: k-means start and restarts
# of codes idle for 20 steps. Without them a VQ-VAE on real data used about 1% of its codes
# (perplexity about 6) and lost to the VAE; the shapes, mostly black background, collapse the
# same way (tests/test_quantize.py). Turn both off with kmeans_init=False, dead_code_steps=0
# (command line: --no-kmeans-init --dead-code-steps 0), as lecture 5's collapse demo does.
# Checkpoints keep what they were built with.
DEFAULT_MAINTENANCE = Maintenance(kmeans_init=True, dead_code_steps=20)
