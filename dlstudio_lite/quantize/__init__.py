"""Quantizers: map each latent pixel's vector to one of ``num_codes`` indices, and back.

Every family is a :class:`Quantizer` (base.py): ``forward(z_e (B, D, h, w)) -> VQOutput``
(quantized values with a gradient to ``z_e``, the family's loss, ``(B, h, w)`` indices,
perplexity and usage), ``encode_indices`` and ``lookup``, so VQ models, priors and the
evaluation treat them all alike. The families, by registry name:

* ``"gradient"`` / ``"ema"`` (codebook.py): the nearest code in a learned codebook (lecture
  7/8), learned by gradient descent or by exponential moving averages, with the
  :class:`Maintenance` upkeep (k-means start, dead-code restart; upkeep.py) and the options
  ``rotation_trick`` (Fifty et al. 2024), ``normalize`` and ``lookup_dim``;
* ``"cosine"``: ViT-VQGAN's factorised, l2-normalised low-dimensional lookup;
* ``"fsq"`` (fsq.py): finite scalar quantization, rounding a few bounded numbers, no codebook;
* ``"lfq"`` (lfq.py): lookup-free quantization (MAGVIT-v2), the signs of a few numbers;
* ``"residual"`` (residual.py): residual quantization (RQ-VAE) over any codebook family.

``QUANTIZERS`` maps names to classes; a new family is one subclass and one line there
(docs/DESIGN.md shows one), and VQ models and the command line (``--quantizer``) find it.
"""
from __future__ import annotations

from .base import (MAX_CODES, CodeUsage, Quantizer, VQOutput, code_counts, code_usage, perplexity,
                   straight_through)
from .codebook import CodebookQuantizer, CosineVectorQuantizer, EMAVectorQuantizer, VectorQuantizer
from .fsq import FSQ, fsq_levels
from .lfq import LFQ
from .residual import ResidualQuantizer
from .upkeep import DEFAULT_MAINTENANCE, Maintenance, _all_reduce_, _broadcast_, kmeans, nearest_codes

# --- the registry: a new family is one class and one line here ------------------------------
QUANTIZERS: dict[str, type[Quantizer]] = {
    "gradient": VectorQuantizer,
    "ema": EMAVectorQuantizer,
    "cosine": CosineVectorQuantizer,
    "fsq": FSQ,
    "lfq": LFQ,
    "residual": ResidualQuantizer,
}


def make_quantizer(name: str, num_codes: int, code_dim: int, **options) -> Quantizer:
    """``QUANTIZERS[name](num_codes, code_dim, **options)``; options the chosen class does
    not take (``decay`` for ``"gradient"``, ``beta`` for ``"fsq"``) are left out, so a VQ
    model can pass all of its quantizer settings whatever the family."""
    if name not in QUANTIZERS:
        raise ValueError(f"unknown quantizer {name!r}: expected one of {', '.join(QUANTIZERS)}")
    cls = QUANTIZERS[name]
    return cls(num_codes, code_dim, **cls.accepted_options(options))


__all__ = ["DEFAULT_MAINTENANCE", "FSQ", "LFQ", "MAX_CODES", "QUANTIZERS", "CodeUsage",
           "CodebookQuantizer", "CosineVectorQuantizer", "EMAVectorQuantizer", "Maintenance",
           "Quantizer", "ResidualQuantizer", "VQOutput", "VectorQuantizer", "code_counts",
           "code_usage", "fsq_levels", "kmeans", "make_quantizer", "nearest_codes", "perplexity",
           "straight_through"]
