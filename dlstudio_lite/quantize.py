"""Vector quantization: replace every encoder output vector by its nearest codebook vector.

Given an encoder output ``z_e`` of shape ``(B, D, h, w)`` and a codebook ``e`` of shape
``(K, D)``, each of the ``N = B*h*w`` channel vectors ``z`` (one per latent pixel) is replaced
by ``e[k]`` with ``k = argmin_j ||z - e_j||^2``. Training uses the lecture's Eq. 22:

    L_vq = ||sg[z_e] - e||^2  +  beta * ||z_e - sg[e]||^2
           (codebook term)       (commitment term)

and the straight-through estimator ``z_q = z_e + sg[e - z_e]``: forward value ``e``,
backward gradient copied unchanged to ``z_e``.

Quantizers are plug-ins. :class:`Quantizer` holds what every variant shares: the
nearest-code step, the straight-through estimator, the usage statistics and the codebook
maintenance (:class:`Maintenance`: k-means start, dead-code restart). A variant only says
how its codebook is stored, what loss it adds and how it updates the codebook:

* ``"gradient"``, :class:`VectorQuantizer`: codebook learned by gradient descent on the
  codebook term;
* ``"ema"``, :class:`EMAVectorQuantizer`: each code moves to an exponential moving average
  of the vectors assigned to it (a buffer updated in place; loss ``beta * commitment`` only).

``QUANTIZERS`` maps names to classes; a new variant is one subclass and one line there
(docs/DESIGN.md shows one), and VQ models and the command line (``--quantizer``) find it.

Implementation notes, each fixing a bug found in the lecture's code or its references:
* channels are moved last (BCHW -> BHWC) *before* flattening, so a row is one pixel's vector;
* argmin (not argmax) of distances, computed in fp32 with autocast off (fp16 distances can
  go negative or overflow), in chunks so no ``N x K`` matrix larger than ``chunk_elements``
  exists at once; codes are looked up by index, never through an ``N x K`` one-hot matrix;
* beta weights the commitment term (taming's "legacy" default puts it on the codebook term);
* EMA statistics start at cluster size 1 and sum = initial codebook, so unused codes stay put
  instead of jumping to huge norms; the codebook is never replaced by a new Parameter.
"""
from __future__ import annotations

import inspect
import math
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


@dataclass
class VQOutput:
    """What a quantizer returns.

    quantized: ``(B, D, h, w)`` codes with the straight-through gradient to ``z_e``.
    loss: scalar, codebook + beta * commitment (EMA: beta * commitment).
    indices: ``(B, h, w)`` long, the chosen code per latent pixel.
    perplexity: scalar, exp(entropy of code usage in the batch), between 1 and K.
    usage: scalar, fraction of the K codes used at least once in the batch.
    """
    quantized: torch.Tensor
    loss: torch.Tensor
    indices: torch.Tensor
    perplexity: torch.Tensor
    usage: torch.Tensor


# --- code usage: one function for perplexity, usage and bits ---------------------------------

@dataclass
class CodeUsage:
    """Statistics of a code histogram, as scalar tensors (no host sync).

    perplexity: ``exp(H)``, K for uniform use, 1 for one code (the lecture's "2 to the
    power of the entropy in bits" is the same number); usage: fraction of codes used at
    least once; bits: the entropy ``H`` in bits, what a prior without context achieves.
    """
    perplexity: torch.Tensor
    usage: torch.Tensor
    bits: torch.Tensor


def code_usage(counts: torch.Tensor) -> CodeUsage:
    """Statistics of ``counts (K,)``, how often each code occurred."""
    p = counts.float() / counts.sum().clamp_min(1)
    entropy = -torch.special.xlogy(p, p).sum()  # xlogy: 0 * log 0 = 0
    return CodeUsage(torch.exp(entropy), (counts > 0).float().mean(), entropy / math.log(2))


def perplexity(indices: torch.Tensor, num_codes: int) -> torch.Tensor:
    """``exp(H(p))`` of the empirical code distribution of ``indices``."""
    return code_usage(code_counts(indices, num_codes)).perplexity


def code_counts(indices: torch.Tensor, num_codes: int) -> torch.Tensor:
    """How often each code occurs: ``(...) long -> (K,) long``.

    Same result as ``torch.bincount(indices, minlength=K)``, but bincount first scans the
    input for its min and max, which on CPU costs about as much as the distance argmin.
    """
    flat = indices.flatten()
    return torch.zeros(num_codes, dtype=torch.long, device=flat.device).index_add_(
        0, flat, torch.ones_like(flat))


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
    def start(self, quantizer: "Quantizer", z: torch.Tensor) -> None:
        """k-means start on the rows ``z (N, D)`` (the same centres on every DDP rank)."""
        centres = _broadcast_(kmeans(z, quantizer.num_codes, self.kmeans_iters))
        quantizer.set_codes(torch.ones(quantizer.num_codes, dtype=torch.bool, device=z.device),
                            centres)
        quantizer.initialized.fill_(True)

    @torch.no_grad()
    def restart_dead_codes(self, quantizer: "Quantizer", z: torch.Tensor,
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


# --- the quantizer and its update rules --------------------------------------------------------

class Quantizer(nn.Module):
    """Nearest-neighbour quantizer; subclasses choose how the codebook is learned.

    Args:
        num_codes: K, codebook size.  code_dim: D, length of each code (= channels of z_e).
        beta: commitment weight (0.25 in the VQ-VAE paper and the lecture).
        kmeans_init, kmeans_iters, dead_code_steps: the :class:`Maintenance` options.
        chunk_elements: largest distance matrix (N x K entries) computed at once.

    ``forward(z_e)``: ``(B, D, h, w) -> VQOutput``. A subclass (an update rule) defines
    ``init_codebook``, ``codebook_loss`` and, when its codebook is not learned by the
    optimizer, ``update_codebook`` and ``set_codes``.
    """

    def __init__(self, num_codes: int, code_dim: int, beta: float = 0.25,
                 kmeans_init: bool = DEFAULT_MAINTENANCE.kmeans_init,
                 kmeans_iters: int = DEFAULT_MAINTENANCE.kmeans_iters,
                 dead_code_steps: int = DEFAULT_MAINTENANCE.dead_code_steps,
                 chunk_elements: int = 2 ** 24):
        super().__init__()
        if num_codes < 1 or code_dim < 1:
            raise ValueError(f"num_codes and code_dim must be >= 1, got {num_codes}, {code_dim}")
        self.num_codes, self.code_dim, self.beta = num_codes, code_dim, beta
        self.maintenance = Maintenance(kmeans_init, kmeans_iters, dead_code_steps)
        self.chunk_elements = chunk_elements
        # Lecture (and Sonnet) initialisation: uniform in [-1/K, 1/K].
        self.init_codebook(torch.empty(num_codes, code_dim).uniform_(-1.0 / num_codes,
                                                                     1.0 / num_codes))
        # Buffers (not Parameters) so they travel with state_dict and DDP but not the optimizer.
        self.register_buffer("initialized", torch.tensor(not kmeans_init))
        self.register_buffer("steps_unused", torch.zeros(num_codes, dtype=torch.long))

    # -- what an update rule defines -------------------------------------------------------
    def init_codebook(self, init: torch.Tensor) -> None:
        """Store the initial ``(K, D)`` codebook as ``self.codebook``."""
        raise NotImplementedError

    def codebook_loss(self, z: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        """The loss of rows ``z`` and their codes ``e``, both ``(N, D)`` fp32."""
        raise NotImplementedError

    @torch.no_grad()
    def update_codebook(self, z: torch.Tensor, idx: torch.Tensor, counts: torch.Tensor) -> None:
        """Move the codebook after a training batch (``counts`` summed over DDP ranks)."""

    @torch.no_grad()
    def set_codes(self, which: torch.Tensor, vectors: torch.Tensor) -> None:
        """Overwrite the codes selected by ``which`` in place (optimizer keeps the Parameter)."""
        self.codebook[which] = vectors.to(self.codebook.dtype)

    # -- shared by every variant -------------------------------------------------------------
    @torch.no_grad()
    def load_codebook(self, codes: torch.Tensor) -> None:
        """Use ``codes (K, D)`` as the codebook, and as the start: no k-means start follows.

        Writing ``self.codebook`` directly leaves a k-means start pending, which overwrites
        those codes on the first forward pass in training mode.
        """
        if tuple(codes.shape) != (self.num_codes, self.code_dim):
            raise ValueError(f"load_codebook expected codes of shape ({self.num_codes}, "
                             f"{self.code_dim}), got {tuple(codes.shape)}")
        self.set_codes(torch.ones(self.num_codes, dtype=torch.bool, device=self.codebook.device),
                       codes.to(self.codebook.device))
        self.initialized.fill_(True)
        self.steps_unused.zero_()

    def _flatten(self, z_e: torch.Tensor) -> torch.Tensor:
        """``(B, D, h, w) -> (B*h*w, D)``, one row per latent pixel."""
        if z_e.dim() != 4 or z_e.shape[1] != self.code_dim:
            raise ValueError(f"{type(self).__name__} expected z_e of shape (B, {self.code_dim}, "
                             f"h, w), got {tuple(z_e.shape)}")
        # BCHW -> BHWC before flattening: a plain view would mix values of different pixels.
        return z_e.permute(0, 2, 3, 1).reshape(-1, self.code_dim)

    @torch.no_grad()
    def encode_indices(self, z_e: torch.Tensor) -> torch.Tensor:
        """Nearest code per latent pixel, ``(B, D, h, w) -> (B, h, w)``; changes nothing."""
        b, _, h, w = z_e.shape
        return nearest_codes(self._flatten(z_e), self.codebook, self.chunk_elements).view(b, h, w)

    def forward(self, z_e: torch.Tensor) -> VQOutput:
        z = self._flatten(z_e)
        b, d, h, w = z_e.shape
        with torch.autocast(device_type=z.device.type, enabled=False):
            z = z.float()
            if self.training and not bool(self.initialized):
                self.maintenance.start(self, z.detach())
            idx = nearest_codes(z, self.codebook, self.chunk_elements)
            # Look codes up by index (no N x K one-hot); F.embedding's backward is a fast
            # scatter-add of the gradient rows into the codebook.
            e = F.embedding(idx, self.codebook).float()
            loss = self.codebook_loss(z, e)
            z_q = z + (e - z).detach()  # straight-through estimator
            counts = code_counts(idx, self.num_codes)
            if self.training:
                all_counts = _all_reduce_(counts.clone())  # usage over all DDP ranks
                self.update_codebook(z.detach(), idx, all_counts)
                self.maintenance.restart_dead_codes(self, z.detach(), all_counts)
            usage = code_usage(counts)
        quantized = z_q.view(b, h, w, d).permute(0, 3, 1, 2)
        return VQOutput(quantized, loss, idx.view(b, h, w), usage.perplexity, usage.usage)

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """Codes for an index map: ``(B, h, w) long -> (B, D, h, w)``."""
        if indices.dim() != 3 or indices.dtype != torch.long:
            raise ValueError(f"lookup expected (B, h, w) long indices, got "
                             f"{tuple(indices.shape)} {indices.dtype}")
        if indices.numel() and (indices.min() < 0 or indices.max() >= self.num_codes):
            raise ValueError(f"indices must lie in [0, {self.num_codes}), got "
                             f"[{int(indices.min())}, {int(indices.max())}]")
        return self.codebook[indices].permute(0, 3, 1, 2)


class VectorQuantizer(Quantizer):
    """Codebook learned by gradient descent (a Parameter); loss = Eq. 22 in full."""

    def init_codebook(self, init: torch.Tensor) -> None:
        self.codebook = nn.Parameter(init)

    def codebook_loss(self, z: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        codebook_term = F.mse_loss(e, z.detach())   # ||sg[z_e] - e||^2: trains the codebook
        commitment = F.mse_loss(z, e.detach())      # ||z_e - sg[e]||^2: trains the encoder
        return codebook_term + self.beta * commitment


class EMAVectorQuantizer(Quantizer):
    """Vector quantizer whose codebook follows an exponential moving average (EMA).

    After each training batch, with ``n_k`` = number of vectors assigned to code k and
    ``s_k`` = their sum (summed over DDP ranks when torch.distributed is initialised):

        N_k <- decay * N_k + (1 - decay) * n_k        m_k <- decay * m_k + (1 - decay) * s_k
        e_k  = m_k / N~_k,  N~_k = (N_k + eps) / (sum N + K eps) * sum N   (Laplace smoothing)

    ``N`` starts at 1 and ``m`` at the initial codebook, so ``e = m / N`` holds from step 0 and
    an unused code stays (nearly) where it is: both its ``N_k`` and ``m_k`` shrink by the same
    factor. (Starting ``N`` at 0 with random ``m`` divides a random vector by ~eps: norms of
    1e5 and a collapsed codebook for the first thousand steps.) Loss = ``beta * commitment``.
    """

    def __init__(self, num_codes: int, code_dim: int, beta: float = 0.25, decay: float = 0.99,
                 eps: float = 1e-5, kmeans_init: bool = DEFAULT_MAINTENANCE.kmeans_init,
                 kmeans_iters: int = DEFAULT_MAINTENANCE.kmeans_iters,
                 dead_code_steps: int = DEFAULT_MAINTENANCE.dead_code_steps,
                 chunk_elements: int = 2 ** 24):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must be in [0, 1), got {decay}")
        self.decay, self.eps = decay, eps
        super().__init__(num_codes, code_dim, beta, kmeans_init, kmeans_iters, dead_code_steps,
                         chunk_elements)

    def init_codebook(self, init: torch.Tensor) -> None:
        self.register_buffer("codebook", init)
        self.register_buffer("cluster_size", torch.ones(init.shape[0]))
        self.register_buffer("embed_sum", init.clone())

    def codebook_loss(self, z: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        return self.beta * F.mse_loss(z, e.detach())

    @torch.no_grad()
    def set_codes(self, which: torch.Tensor, vectors: torch.Tensor) -> None:
        # Restart the statistics too, so the next EMA step keeps the new code where it is.
        self.codebook[which] = vectors
        self.cluster_size[which] = 1.0
        self.embed_sum[which] = vectors

    @torch.no_grad()
    def update_codebook(self, z: torch.Tensor, idx: torch.Tensor, counts: torch.Tensor) -> None:
        sums = torch.zeros_like(self.embed_sum).index_add_(0, idx, z)
        _all_reduce_(sums)
        self.cluster_size.mul_(self.decay).add_(counts.float(), alpha=1 - self.decay)
        self.embed_sum.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        total = self.cluster_size.sum()
        smoothed = (self.cluster_size + self.eps) / (total + self.num_codes * self.eps) * total
        self.codebook.copy_(self.embed_sum / smoothed[:, None])


# --- the registry: a new variant is one class above and one line here --------------------------
QUANTIZERS: dict[str, type[Quantizer]] = {
    "gradient": VectorQuantizer,
    "ema": EMAVectorQuantizer,
}


def make_quantizer(name: str, num_codes: int, code_dim: int, **options) -> Quantizer:
    """``QUANTIZERS[name](num_codes, code_dim, **options)``; options the chosen class does
    not take (``decay`` for ``"gradient"``) are left out, so a VQ model can pass all of its
    quantizer settings whatever the variant."""
    if name not in QUANTIZERS:
        raise ValueError(f"unknown quantizer {name!r}: expected one of {', '.join(QUANTIZERS)}")
    cls = QUANTIZERS[name]
    accepted = inspect.signature(cls).parameters
    return cls(num_codes, code_dim, **{k: v for k, v in options.items() if k in accepted})
