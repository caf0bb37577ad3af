"""Codebook quantizers: replace every vector by its nearest code in a learned codebook.

Given rows ``z`` (one per latent pixel) and a codebook ``e (K, d)``, each row becomes
``e[k]`` with ``k = argmin_j ||z - e_j||^2``. Training uses the lecture's Eq. 22:

    L_vq = ||sg[z_e] - e||^2  +  beta * ||z_e - sg[e]||^2
           (codebook term)       (commitment term)

and the straight-through estimator ``z_q = z_e + sg[e - z_e]`` (or, with
``rotation_trick=True``, Fifty et al.'s rotation of the gradient; see ``base.straight_through``).

:class:`CodebookQuantizer` holds the nearest-code step and the codebook upkeep
(:class:`~.upkeep.Maintenance`); an update rule only says how its codebook is stored, what
loss it adds and how it moves: ``"gradient"`` (:class:`VectorQuantizer`) learns it by gradient
descent on the codebook term, ``"ema"`` (:class:`EMAVectorQuantizer`) moves each code to an
exponential moving average of its vectors. ``normalize=True`` l2-normalises rows and codes,
so the nearest code is the one at the smallest angle; with a small ``lookup_dim`` that is
ViT-VQGAN's factorised lookup (:class:`CosineVectorQuantizer`, ``"cosine"``).

Implementation notes, each fixing a bug found in the lecture's code or its references:
* argmin (not argmax) of distances, in fp32 with autocast off, in chunks; codes are looked
  up by index, never through an ``N x K`` one-hot matrix;
* beta weights the commitment term (taming's "legacy" default puts it on the codebook term);
* EMA statistics start at cluster size 1 and sum = initial codebook, so unused codes stay put
  instead of jumping to huge norms; the codebook is never replaced by a new Parameter.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import Quantizer, code_counts, straight_through
from .upkeep import DEFAULT_MAINTENANCE, Maintenance, _all_reduce_, nearest_codes


class CodebookQuantizer(Quantizer):
    """Nearest-code quantizer; subclasses choose how the codebook is learned.

    Args:
        num_codes: K, codebook size.  code_dim: D, channels of z_e.
        beta: commitment weight (0.25 in the VQ-VAE paper and the lecture).
        kmeans_init, kmeans_iters, dead_code_steps: the :class:`Maintenance` options.
        chunk_elements: largest distance matrix (N x K entries) computed at once.
        rotation_trick: rotate the gradient onto the code instead of copying it (Fifty et al. 2024).
        normalize: l2-normalise rows and codes (cosine similarity lookup, ViT-VQGAN).
        lookup_dim: length of the codes; a linear map takes z_e there and back when it differs from code_dim.

    A subclass (an update rule) defines ``init_codebook``, ``codebook_loss`` and, when its
    codebook is not learned by the optimizer, ``update_codebook`` and ``set_codes``.
    """

    def __init__(self, num_codes: int, code_dim: int, beta: float = 0.25,
                 kmeans_init: bool = DEFAULT_MAINTENANCE.kmeans_init,
                 kmeans_iters: int = DEFAULT_MAINTENANCE.kmeans_iters,
                 dead_code_steps: int = DEFAULT_MAINTENANCE.dead_code_steps,
                 chunk_elements: int = 2 ** 24, rotation_trick: bool = False,
                 normalize: bool = False, lookup_dim: int | None = None):
        super().__init__(num_codes, code_dim, lookup_dim)
        self.beta, self.rotation_trick, self.normalize = beta, rotation_trick, normalize
        self.maintenance = Maintenance(kmeans_init, kmeans_iters, dead_code_steps)
        self.chunk_elements = chunk_elements
        # Lecture (and Sonnet) initialisation: uniform in [-1/K, 1/K].
        init = torch.empty(num_codes, self.lookup_dim).uniform_(-1.0 / num_codes, 1.0 / num_codes)
        self.init_codebook(F.normalize(init, dim=1) if normalize else init)
        # Buffers (not Parameters) so they travel with state_dict and DDP but not the optimizer.
        self.register_buffer("initialized", torch.tensor(not kmeans_init))
        self.register_buffer("steps_unused", torch.zeros(num_codes, dtype=torch.long))

    # -- what an update rule defines -------------------------------------------------------
    def init_codebook(self, init: torch.Tensor) -> None:
        """Store the initial ``(K, d)`` codebook as ``self.codebook``."""
        raise NotImplementedError

    def codebook_loss(self, z: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        """The loss of rows ``z`` and their codes ``e``, both ``(N, d)`` fp32."""
        raise NotImplementedError

    @torch.no_grad()
    def update_codebook(self, z: torch.Tensor, idx: torch.Tensor, counts: torch.Tensor) -> None:
        """Move the codebook after a training batch (``counts`` summed over DDP ranks)."""

    @torch.no_grad()
    def set_codes(self, which: torch.Tensor, vectors: torch.Tensor) -> None:
        """Overwrite the codes selected by ``which`` in place (optimizer keeps the Parameter).

        Through ``.data``, unseen by autograd: a dead-code restart comes after the lookup of
        a batch whose backward pass is still to come, and with ``normalize`` that lookup
        saved the codebook for it (a tracked in-place write would make the backward pass
        fail). The restarted codes were unused in that batch: their gradient is zero
        whatever their values."""
        self.codebook.data[which] = vectors.to(self.codebook.dtype)

    @torch.no_grad()
    def load_codebook(self, codes: torch.Tensor) -> None:
        """Take ``codes (K, lookup_dim)`` as the codebook and as its start: no k-means start
        overwrites them on the first training-mode forward pass (writing ``self.codebook``
        directly leaves that start pending)."""
        if tuple(codes.shape) != (self.num_codes, self.lookup_dim):
            raise ValueError(f"load_codebook expected codes of shape ({self.num_codes}, "
                             f"{self.lookup_dim}), got {tuple(codes.shape)}")
        everything = torch.ones(self.num_codes, dtype=torch.bool, device=self.codebook.device)
        self.set_codes(everything, codes.to(self.codebook.device))
        self.initialized.fill_(True)
        self.steps_unused.zero_()

    # -- the family's part of the protocol ---------------------------------------------------
    def codes(self) -> torch.Tensor:
        """The ``(K, d)`` codes in use (unit length with ``normalize``), fp32."""
        codebook = self.codebook.float()
        return F.normalize(codebook, dim=1) if self.normalize else codebook

    def _rows(self, z: torch.Tensor) -> torch.Tensor:
        return F.normalize(z, dim=1) if self.normalize else z

    def quantize_rows(self, z: torch.Tensor):
        z = self._rows(z)
        if self.training and not bool(self.initialized):
            self.maintenance.start(self, z.detach())
        codes = self.codes()
        idx = nearest_codes(z, codes, self.chunk_elements)
        # Look codes up by index (no N x K one-hot); F.embedding's backward is a fast
        # scatter-add of the gradient rows into the codebook.
        e = F.embedding(idx, codes)
        loss = self.codebook_loss(z, e)
        z_q = straight_through(z, e, self.rotation_trick)
        if self.training:
            all_counts = _all_reduce_(code_counts(idx, self.num_codes))  # over all DDP ranks
            self.update_codebook(z.detach(), idx, all_counts)
            self.maintenance.restart_dead_codes(self, z.detach(), all_counts)
        return z_q, loss, idx

    @torch.no_grad()
    def vectors_to_indices(self, z: torch.Tensor) -> torch.Tensor:
        return nearest_codes(self._rows(z), self.codes(), self.chunk_elements)

    def indices_to_codes(self, idx: torch.Tensor) -> torch.Tensor:
        return self.codes()[idx]


class VectorQuantizer(CodebookQuantizer):
    """Codebook learned by gradient descent (a Parameter); loss = Eq. 22 in full."""

    def init_codebook(self, init: torch.Tensor) -> None:
        self.codebook = nn.Parameter(init)

    def codebook_loss(self, z: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        codebook_term = F.mse_loss(e, z.detach())   # ||sg[z_e] - e||^2: trains the codebook
        commitment = F.mse_loss(z, e.detach())      # ||z_e - sg[e]||^2: trains the encoder
        return codebook_term + self.beta * commitment


class CosineVectorQuantizer(VectorQuantizer):
    """ViT-VQGAN's factorised codes: a linear map to ``lookup_dim`` (8 here; 768 -> 32 or 8
    in the paper) numbers, rows and codes l2-normalised, so the lookup compares directions
    only; codebook learned by gradient descent as in the paper. The normalised space is
    small and bounded, which is what keeps most codes in use."""

    def __init__(self, num_codes: int, code_dim: int, lookup_dim: int | None = 8,
                 normalize: bool = True, **options):
        super().__init__(num_codes, code_dim, lookup_dim=lookup_dim, normalize=normalize, **options)


class EMAVectorQuantizer(CodebookQuantizer):
    """Vector quantizer whose codebook follows an exponential moving average (EMA).

    After each training batch, with ``n_k`` = number of vectors assigned to code k and
    ``s_k`` = their sum (summed over DDP ranks when torch.distributed is initialised):

        N_k <- decay * N_k + (1 - decay) * n_k        m_k <- decay * m_k + (1 - decay) * s_k
        e_k  = m_k / N~_k,  N~_k = (N_k + eps) / (sum N + K eps) * sum N   (Laplace smoothing)

    ``N`` starts at 1 and ``m`` at the initial codebook, so ``e = m / N`` holds from step 0 and
    an unused code stays (nearly) where it is: both its ``N_k`` and ``m_k`` shrink by the same
    factor. (Starting ``N`` at 0 with random ``m`` divides a random vector by ~eps: norms of
    1e5 and a collapsed codebook for the first thousand steps.) Loss = ``beta * commitment``.
    With ``normalize`` the codes are l2-normalised when used (``codes()``).
    """

    def __init__(self, num_codes: int, code_dim: int, beta: float = 0.25, decay: float = 0.99,
                 eps: float = 1e-5, kmeans_init: bool = DEFAULT_MAINTENANCE.kmeans_init,
                 kmeans_iters: int = DEFAULT_MAINTENANCE.kmeans_iters,
                 dead_code_steps: int = DEFAULT_MAINTENANCE.dead_code_steps,
                 chunk_elements: int = 2 ** 24, rotation_trick: bool = False,
                 normalize: bool = False, lookup_dim: int | None = None):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must be in [0, 1), got {decay}")
        self.decay, self.eps = decay, eps
        super().__init__(num_codes, code_dim, beta, kmeans_init, kmeans_iters, dead_code_steps,
                         chunk_elements, rotation_trick, normalize, lookup_dim)

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
