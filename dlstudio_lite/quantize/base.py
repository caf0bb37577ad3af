"""What every quantizer family shares: the output, the usage statistics, the base class and
the two gradient estimators (straight-through and the rotation trick)."""
from __future__ import annotations

import inspect
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

# The largest index range a quantizer may have: code counts are dense (K,) vectors.
MAX_CODES = 2 ** 24


@dataclass
class VQOutput:
    """What a quantizer returns.

    quantized: ``(B, D, h, w)`` codes with the gradient estimator's gradient to ``z_e``.
    loss: scalar, the family's own loss (codebook + beta * commitment, an entropy term, or 0).
    indices: ``(B, h, w)`` long, the code per latent pixel, in ``[0, num_codes)``.
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


# --- gradient estimators ---------------------------------------------------------------------

def straight_through(z: torch.Tensor, e: torch.Tensor, rotation_trick: bool = False) -> torch.Tensor:
    """Rows with the value of ``e`` and a gradient to ``z``, both ``(N, d)``.

    Straight-through (VQ-VAE): ``z + sg[e - z]``, the gradient is copied unchanged.
    Rotation trick (Fifty et al. 2024): ``sg[s R] z`` with ``R`` the rotation taking the
    direction of ``z`` to that of ``e`` and ``s = |e| / |z|``; the value is still ``e``, but
    the gradient is rotated and scaled as ``e`` sits relative to ``z``, so it carries how
    far and in which direction the code lies. ``R`` is applied as two Householder
    reflections without forming a ``d x d`` matrix:
    ``R z = z - 2 (w.z) w + 2 (u.z) q`` with ``u = z/|z|``, ``q = e/|e|``, ``w = (u+q)/|u+q|``.
    """
    if not rotation_trick:
        return z + (e - z).detach()
    with torch.no_grad():
        z_norm = z.norm(dim=1, keepdim=True).clamp_min(1e-6)
        e_norm = e.norm(dim=1, keepdim=True).clamp_min(1e-6)
        u, q = z / z_norm, e / e_norm
        w = F.normalize(u + q, dim=1, eps=1e-6)
    rotated = (z - 2 * (z * w).sum(1, keepdim=True) * w
               + 2 * (z * u).sum(1, keepdim=True) * q)
    return rotated * (e_norm / z_norm)


# --- the base class of every family ----------------------------------------------------------

class Quantizer(nn.Module):
    """Maps each latent pixel's vector to one of ``num_codes`` indices and back.

    ``forward(z_e)``: ``(B, D, h, w) -> VQOutput``; ``encode_indices``: ``(B, D, h, w) ->
    (B, h, w)``; ``lookup``: ``(B, h, w) -> (B, D, h, w)``. A family works on rows of its
    own lookup space of ``lookup_dim`` numbers; when that differs from ``code_dim`` the base
    adds linear maps into it and back out (ViT-VQGAN's factorised codes, FSQ's and LFQ's
    projections). ``num_codes`` is always the number of distinct indices: what a prior
    over the codes must model, ``log2(num_codes)`` bits per latent pixel at most.

    A family defines ``quantize_rows`` (value, loss, indices; training-time updates),
    ``vectors_to_indices`` and ``indices_to_codes``.
    """

    def __init__(self, num_codes: int, code_dim: int, lookup_dim: int | None = None):
        super().__init__()
        lookup_dim = code_dim if lookup_dim is None else lookup_dim
        if num_codes < 1 or code_dim < 1 or lookup_dim < 1:
            raise ValueError(f"num_codes, code_dim and lookup_dim must be >= 1, got "
                             f"{num_codes}, {code_dim}, {lookup_dim}")
        if num_codes > MAX_CODES:
            raise ValueError(f"num_codes must be at most 2**24 (code counts are dense vectors), "
                             f"got {num_codes}")
        self.num_codes, self.code_dim, self.lookup_dim = num_codes, code_dim, lookup_dim
        # nn.Identity has no state, so a quantizer without projection keeps its old state_dict.
        projected = lookup_dim != code_dim
        self.project_in = nn.Linear(code_dim, lookup_dim) if projected else nn.Identity()
        self.project_out = nn.Linear(lookup_dim, code_dim) if projected else nn.Identity()

    @classmethod
    def accepted_options(cls, options: dict) -> dict:
        """The entries of ``options`` that the constructor takes (following ``**options``
        into the base classes), so a VQ model can pass all of its settings to any family."""
        names = set()
        for klass in cls.__mro__:
            init = klass.__dict__.get("__init__")
            if init is None:
                continue
            params = inspect.signature(init).parameters.values()
            names |= {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
            if not any(p.kind is p.VAR_KEYWORD for p in params):
                break
        return {k: v for k, v in options.items() if k in names}

    # -- what a family defines ---------------------------------------------------------------
    def quantize_rows(self, z: torch.Tensor):
        """``z (N, lookup_dim)`` fp32 -> ``(quantized rows with gradient, loss, indices (N,))``;
        in training mode also updates the family's state (codebook, statistics)."""
        raise NotImplementedError

    def vectors_to_indices(self, z: torch.Tensor) -> torch.Tensor:
        """Index of each row ``z (N, lookup_dim)``; changes nothing."""
        raise NotImplementedError

    def indices_to_codes(self, idx: torch.Tensor) -> torch.Tensor:
        """The codes of ``idx (N,)`` in the lookup space: ``(N, lookup_dim)``."""
        raise NotImplementedError

    # -- shared by every family --------------------------------------------------------------
    def _flatten(self, z_e: torch.Tensor) -> torch.Tensor:
        """``(B, D, h, w) -> (B*h*w, D)``, one row per latent pixel."""
        if z_e.dim() != 4 or z_e.shape[1] != self.code_dim:
            raise ValueError(f"{type(self).__name__} expected z_e of shape (B, {self.code_dim}, "
                             f"h, w), got {tuple(z_e.shape)}")
        # BCHW -> BHWC before flattening: a plain view would mix values of different pixels.
        return z_e.permute(0, 2, 3, 1).reshape(-1, self.code_dim)

    def forward(self, z_e: torch.Tensor) -> VQOutput:
        b, d, h, w = z_e.shape
        z = self._flatten(z_e)
        # fp32 with autocast off: fp16 distances, roundings and entropies go wrong.
        with torch.autocast(device_type=z.device.type, enabled=False):
            rows, loss, idx = self.quantize_rows(self.project_in(z.float()))
            z_q = self.project_out(rows)
            usage = code_usage(code_counts(idx, self.num_codes))
        quantized = z_q.view(b, h, w, d).permute(0, 3, 1, 2)
        return VQOutput(quantized, loss, idx.view(b, h, w), usage.perplexity, usage.usage)

    @torch.no_grad()
    def encode_indices(self, z_e: torch.Tensor) -> torch.Tensor:
        """Index per latent pixel, ``(B, D, h, w) -> (B, h, w)``; changes nothing."""
        b, _, h, w = z_e.shape
        with torch.autocast(device_type=z_e.device.type, enabled=False):
            rows = self.project_in(self._flatten(z_e).float())
            return self.vectors_to_indices(rows).view(b, h, w)

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """Codes for an index map: ``(B, h, w) long -> (B, D, h, w)``."""
        if indices.dim() != 3 or indices.dtype != torch.long:
            raise ValueError(f"lookup expected (B, h, w) long indices, got "
                             f"{tuple(indices.shape)} {indices.dtype}")
        if indices.numel() and (indices.min() < 0 or indices.max() >= self.num_codes):
            raise ValueError(f"indices must lie in [0, {self.num_codes}), got "
                             f"[{int(indices.min())}, {int(indices.max())}]")
        b, h, w = indices.shape
        codes = self.project_out(self.indices_to_codes(indices.flatten()))
        return codes.view(b, h, w, self.code_dim).permute(0, 3, 1, 2)
