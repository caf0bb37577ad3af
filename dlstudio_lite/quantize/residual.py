"""Residual quantization (RQ-VAE; Lee et al. 2022): ``depth`` codebook quantizers in a row,
each quantizing what the previous ones left over.

    r_0 = z,   e_l = Q_l(r_l),   r_{l+1} = r_l - e_l,   z_q = e_0 + ... + e_{depth-1}

``depth`` codes of ``K`` entries per latent pixel address ``K^depth`` sums: the course's
``num_codes`` is that number (the rate, ``depth * log2 K`` bits), so ``K = num_codes **
(1/depth)`` must be a whole number. The index is the mixed-radix number of the level codes
(level 0 least significant). Each level is any codebook quantizer (``"ema"`` by default,
with its k-means start and dead-code restarts on its own residuals) and adds its loss; the
commitment of level l, ``||r_l - sg[e_l]||^2 = ||z - sg[e_0 + ... + e_l]||^2``, is RQ-VAE's.
The gradient estimator acts once, on the sum (``z + sg[z_q - z]``, as in RQ-VAE's code), not
once per level.
"""
from __future__ import annotations

import torch
from torch import nn

from .base import Quantizer, straight_through
from .codebook import CodebookQuantizer


class ResidualQuantizer(Quantizer):
    """Residual vector quantization over any codebook quantizer.

    Args:
        num_codes: codes per latent pixel in all, K ** depth.
        code_dim: channels of z_e.
        depth: number of levels.
        quantizer: the levels' family, a codebook quantizer's name in QUANTIZERS.
        lookup_dim: length of the codes; a linear map takes z_e there and back when it differs from code_dim.
        rotation_trick: rotate the gradient of the sum onto z_q instead of copying it.
        options: the levels' own options (beta, decay, kmeans_init, dead_code_steps, ...).

    ``stages`` holds the ``depth`` codebook quantizers, level 0 first.
    """

    def __init__(self, num_codes: int, code_dim: int, depth: int = 2, quantizer: str = "ema",
                 lookup_dim: int | None = None, rotation_trick: bool = False, **options):
        per_level = round(num_codes ** (1 / depth)) if depth >= 1 and num_codes >= 1 else 0
        if depth < 1 or per_level < 2 or per_level ** depth != num_codes:
            raise ValueError(f"residual quantization needs num_codes = K ** depth with K >= 2; "
                             f"got num_codes {num_codes} and depth {depth} (e.g. 256 = 16 ** 2)")
        super().__init__(num_codes, code_dim, lookup_dim)
        from . import make_quantizer  # the registry imports this module
        # The levels work in this quantizer's lookup space, without maps of their own.
        options = {**options, "lookup_dim": None, "rotation_trick": False}
        self.stages = nn.ModuleList(make_quantizer(quantizer, per_level, self.lookup_dim, **options)
                                    for _ in range(depth))
        if not isinstance(self.stages[0], CodebookQuantizer):
            raise ValueError(f"residual quantization needs a codebook quantizer for its levels, "
                             f"got {quantizer!r} ({type(self.stages[0]).__name__})")
        self.codes_per_level, self.rotation_trick = per_level, rotation_trick
        self.register_buffer("_basis", per_level ** torch.arange(depth), persistent=False)

    @classmethod
    def accepted_options(cls, options: dict) -> dict:
        return dict(options)  # the levels' constructor keeps what it takes

    def quantize_rows(self, z: torch.Tensor):
        residual, total, loss, digits = z, torch.zeros_like(z), z.new_zeros(()), []
        for stage in self.stages:
            # The value of the level's output is its code before the level's training-time
            # update (an EMA step moves the codebook after the lookup).
            rows, stage_loss, idx = stage.quantize_rows(residual)
            e = rows.detach()
            residual, total = residual - e, total + e
            loss, digits = loss + stage_loss, digits + [idx]
        return straight_through(z, total, self.rotation_trick), loss, self._index(digits)

    def _index(self, digits: list[torch.Tensor]) -> torch.Tensor:
        return (torch.stack(digits, 1) * self._basis).sum(1)

    @torch.no_grad()
    def vectors_to_indices(self, z: torch.Tensor) -> torch.Tensor:
        residual, digits = z, []
        for stage in self.stages:
            idx = stage.vectors_to_indices(residual)
            residual = residual - stage.indices_to_codes(idx)
            digits.append(idx)
        return self._index(digits)

    def indices_to_codes(self, idx: torch.Tensor) -> torch.Tensor:
        digits = (idx[:, None] // self._basis) % self.codes_per_level
        return sum(stage.indices_to_codes(digits[:, i]) for i, stage in enumerate(self.stages))
