"""Finite scalar quantization (FSQ; Mentzer et al. 2023): no codebook at all.

Each of ``d = len(levels)`` numbers is squashed into a bounded interval and rounded to one
of ``levels[i]`` values; the implicit codebook is the grid of all combinations,
``prod(levels)`` codes, every one reachable, with no auxiliary loss, k-means start or
restarts (the paper reports near-full usage at scale; appendix 10 measures how much of the
grid a small, briefly trained encoder uses). Rounding passes its gradient straight through.

The bound is the paper's (Appendix A.1): ``tanh(z + shift) * half_l - offset``, with an
offset of 1/2 for even levels so that rounding gives exactly ``L`` integers, e.g. -4..3 for
``L = 8``; codes are those integers divided by ``L // 2``.
"""
from __future__ import annotations

import math

import torch

from .base import Quantizer


def fsq_levels(num_codes: int) -> list[int]:
    """Levels whose product is ``num_codes``: factors between 8 and 3, largest first.

    This reproduces the paper's recommendations (240 -> [8, 6, 5], 1000 -> [8, 5, 5, 5],
    4375 -> [7, 5, 5, 5, 5], 15360 -> [8, 8, 8, 6, 5], 64000 -> [8, 8, 8, 5, 5, 5]) and
    gives e.g. 512 -> [8, 8, 8], 256 -> [8, 8, 4].
    """
    def factor(n: int, largest: int) -> list[int] | None:
        if n == 1:
            return []
        for f in range(min(largest, 8), 2, -1):
            if n % f == 0 and (rest := factor(n // f, f)) is not None:
                return [f, *rest]
        return None

    levels = factor(num_codes, 8) if num_codes > 1 else None
    if levels is None:
        raise ValueError(f"FSQ needs num_codes to be a product of levels between 3 and 8 "
                         f"(e.g. 240, 256, 512, 1000, 4096), got {num_codes}; or pass levels")
    return levels


class FSQ(Quantizer):
    """Finite scalar quantization.

    Args:
        num_codes: size of the implicit codebook, the product of the levels.
        code_dim: channels of z_e; a linear map takes them to len(levels) numbers and back.
        levels: values per dimension (default: ``fsq_levels(num_codes)``), each at least 3.
    """

    def __init__(self, num_codes: int, code_dim: int, levels: list[int] | None = None):
        levels = fsq_levels(num_codes) if levels is None else [int(v) for v in levels]
        if not levels or min(levels) < 3 or math.prod(levels) != num_codes:
            raise ValueError(f"FSQ levels must be at least 3 each and multiply to num_codes = "
                             f"{num_codes}; got {levels} (product {math.prod(levels)}): pass "
                             f"--num-codes {math.prod(levels)} or other levels")
        super().__init__(num_codes, code_dim, lookup_dim=len(levels))
        self.levels = levels
        # Mixed radix: index = sum_i digit_i * prod(levels[:i]); not saved (derived from levels).
        basis = torch.cumprod(torch.tensor([1, *levels[:-1]]), 0)
        self.register_buffer("_levels", torch.tensor(levels), persistent=False)
        self.register_buffer("_basis", basis, persistent=False)

    def bound(self, z: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
        """``(N, d)`` -> values in ``(-L/2, L/2)`` per dimension, before rounding."""
        half_l = (self._levels - 1) * (1 + eps) / 2
        offset = torch.where(self._levels % 2 == 0, 0.5, 0.0)
        shift = torch.atanh(offset / half_l)
        return torch.tanh(z + shift) * half_l - offset

    def quantize_rows(self, z: torch.Tensor):
        bounded = self.bound(z)
        rounded = bounded + (bounded.round() - bounded).detach()  # straight-through rounding
        codes = rounded / (self._levels // 2)
        return codes, z.new_zeros(()), self._digits_to_index(rounded.detach().round())

    def _digits_to_index(self, rounded: torch.Tensor) -> torch.Tensor:
        digits = rounded.long() + self._levels // 2                  # 0 .. L-1
        return (digits * self._basis).sum(1)

    @torch.no_grad()
    def vectors_to_indices(self, z: torch.Tensor) -> torch.Tensor:
        return self._digits_to_index(self.bound(z).round())

    def indices_to_codes(self, idx: torch.Tensor) -> torch.Tensor:
        digits = (idx[:, None] // self._basis) % self._levels
        half = self._levels // 2
        return (digits - half).float() / half
