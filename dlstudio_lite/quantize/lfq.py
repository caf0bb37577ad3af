"""Lookup-free quantization (LFQ; Yu et al. 2023, MAGVIT-v2): each of ``d`` numbers becomes
its sign, so the implicit codebook is ``{-1, 1}^d``, ``2^d`` codes, and the index is the
binary number of the signs (first dimension most significant). Nothing is looked up.

An entropy term keeps the codes in use. With soft code probabilities
``p(c | z) = softmax_c(2 tau z.c)`` (``tau = inv_temperature``; ``-2 z.c`` is the squared
distance up to terms that do not depend on c), the loss is

    entropy_weight * ( mean_n H[p(. | z_n)]  -  diversity_gamma * H[mean_n p(. | z_n)] )
                       (each row confident)      (all codes used across the batch)
    + beta * ||z - sg[sign z]||^2                 (commitment)

Both entropies are exact: log-probabilities come from log_softmax and the batch average's
logarithm from logsumexp, so nothing is clamped (the reference implementation clamps
probabilities at 1e-5 inside the logarithm). Costs ``N x 2^d`` memory: keep d small. Under
DDP the batch entropy is each process's own (the reference averages the mean probabilities
over processes first).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .base import Quantizer


class LFQ(Quantizer):
    """Lookup-free quantization.

    Args:
        num_codes: 2^d, a power of two.
        code_dim: channels of z_e; a linear map takes them to d numbers and back.
        beta: commitment weight.
        entropy_weight: weight of the entropy term (0.1 as in the reference implementation).
        diversity_gamma: weight of the batch entropy inside the entropy term.
        inv_temperature: sharpness of the soft code probabilities.
    """

    def __init__(self, num_codes: int, code_dim: int, beta: float = 0.25,
                 entropy_weight: float = 0.1, diversity_gamma: float = 1.0,
                 inv_temperature: float = 100.0):
        bits = round(math.log2(num_codes)) if num_codes > 1 else 0
        if bits < 1 or 2 ** bits != num_codes:
            raise ValueError(f"LFQ needs num_codes to be a power of two (2^d codes for d signs), "
                             f"got {num_codes}")
        super().__init__(num_codes, code_dim, lookup_dim=bits)
        self.beta, self.entropy_weight = beta, entropy_weight
        self.diversity_gamma, self.inv_temperature = diversity_gamma, inv_temperature
        self.register_buffer("_powers", 2 ** torch.arange(bits - 1, -1, -1), persistent=False)

    def quantize_rows(self, z: torch.Tensor):
        signs = torch.where(z > 0, 1.0, -1.0)
        idx = self.vectors_to_indices(z)
        loss = self.entropy_weight * self.entropy_loss(z) + self.beta * F.mse_loss(z, signs)
        return z + (signs - z).detach(), loss, idx

    def entropy_loss(self, z: torch.Tensor) -> torch.Tensor:
        """Mean per-row entropy minus gamma times the entropy of the batch's mean probabilities."""
        all_codes = self.indices_to_codes(torch.arange(self.num_codes, device=z.device))
        logp = torch.log_softmax(2 * self.inv_temperature * z @ all_codes.t(), dim=1)  # (N, 2^d)
        per_row = -(logp.exp() * logp).sum(1).mean()
        log_mean = torch.logsumexp(logp, dim=0) - math.log(z.shape[0])
        batch = -(log_mean.exp() * log_mean).sum()
        return per_row - self.diversity_gamma * batch

    @torch.no_grad()
    def vectors_to_indices(self, z: torch.Tensor) -> torch.Tensor:
        return ((z > 0).long() * self._powers).sum(1)

    def indices_to_codes(self, idx: torch.Tensor) -> torch.Tensor:
        return ((idx[:, None] & self._powers) != 0).float() * 2 - 1
