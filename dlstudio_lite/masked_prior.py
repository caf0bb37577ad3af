"""A MaskGIT-style prior: a bidirectional transformer that fills in masked codes in parallel.

The GPT-style prior (``prior.py``) writes a code grid left to right, one code per step, each
code seeing only the ones before it. MaskGIT (Chang et al., 2022) trains the same kind of
transformer without the causal mask: a random share of the grid's codes is replaced by a
``[MASK]`` token and the model predicts them from everything that is left, above, below,
left and right. Sampling starts from a grid that is all ``[MASK]`` and fills it in a few
rounds: each round predicts every masked code at once, keeps the ones the model is most
sure of and masks the rest again, fewer each round, on a cosine schedule.

What a student can measure: a grid of 64 codes takes 8 sequential steps instead of 64, and
every code is chosen seeing both sides of it, so a shape's outline can be drawn as a whole
rather than row by row. Fewer steps is not less arithmetic: with its key/value cache the
GPT prior computes each position once, while each of MaskGIT's rounds recomputes the whole
grid (8 rounds: about 8 times the work). On a GPU the sequential steps cost the time, on a
CPU the arithmetic. And the model gives no likelihood of a grid, so its test loss (bits per
*masked* code) is not comparable with the GPT prior's bits per code.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .config import records_hparams
from .evaluate import evaluating
from .prior import TransformerPrior, filter_logits


def mask_ratio(progress: torch.Tensor | float) -> torch.Tensor:
    """MaskGIT's cosine schedule: the share of codes still masked when ``progress`` (in
    [0, 1]) of the way is done; 1 at the start, 0 at the end. Float64 of the shape of
    ``progress`` (in float32, 64 * cos(pi/3) rounds down to 31)."""
    return torch.cos(math.pi / 2 * torch.as_tensor(progress, dtype=torch.float64)).clamp(0.0, 1.0)


def gumbel_noise(like: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Standard Gumbel noise of the shape of ``like``: -log(-log(u)), u uniform in (0, 1)."""
    u = torch.rand(like.shape, device=like.device, generator=generator)
    return -torch.log((-torch.log(u.clamp_min(1e-20))).clamp_min(1e-20))


class MaskedPrior(TransformerPrior):
    """Bidirectional transformer over the flattened ``(h, w)`` code grid of a VQ model.

    Inputs are tokens in ``[0, num_codes]`` (``num_codes`` is ``[MASK]``), outputs are logits
    over the ``num_codes`` real codes at every position. Same arguments as
    :class:`~dlstudio_lite.prior.TransformerPrior`, plus ``decode_steps``, the rounds of
    parallel decoding (each round fixes at least one code, so more rounds than codes end
    early), and ``choice_temperature``, the Gumbel noise that makes the choice of
    which codes to keep random at first and greedy at the end (MaskGIT's 4.5).
    """

    causal = False  # the parent builds its blocks without the causal mask

    @records_hparams
    def __init__(self, num_codes: int, latent_shape: tuple[int, int] | list[int] = (8, 8),
                 n_layers: int = 4, n_head: int = 4, n_embd: int = 128, dropout: float = 0.1,
                 decode_steps: int = 8, choice_temperature: float = 4.5):
        super().__init__(num_codes, latent_shape, n_layers, n_head, n_embd, dropout)
        if decode_steps < 1:
            raise ValueError(f"decode_steps must be a positive integer, got {decode_steps}")
        if choice_temperature < 0:
            raise ValueError(f"choice_temperature must be >= 0, got {choice_temperature}")
        self.decode_steps = int(decode_steps)
        self.choice_temperature = float(choice_temperature)
        self.mask_token = self.num_codes  # the parent's start token: one past the last code

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens: (B, h*w) long in [0, num_codes] -> logits (B, h*w, num_codes)."""
        if tokens.dim() != 2 or tokens.size(1) != self.block_size:
            raise ValueError(f"expected tokens of shape (B, {self.block_size}), got {tuple(tokens.shape)}")
        return super().forward(tokens)

    def random_mask(self, batch: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Which codes to hide in training -> (B, h*w) bool: per grid a ratio from the cosine
        schedule at a uniform random progress, at least one code, at random positions."""
        device = self.head.weight.device
        ratio = mask_ratio(torch.rand(batch, device=device, generator=generator))
        count = (ratio * self.block_size).ceil().clamp(min=1)  # (B,)
        ranks = torch.rand(batch, self.block_size, device=device, generator=generator).argsort(dim=1).argsort(dim=1)
        return ranks < count[:, None]

    def compute_loss(self, indices: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Cross-entropy on the masked codes of indices (B, h, w). Returns (loss, logs):
        "ce" (nats per masked code), "bits_per_masked_code", "accuracy" (argmax hits on the
        masked codes: not the GPT prior's next-code accuracy)."""
        targets = self._check_indices(indices).flatten(1)  # (B, L)
        hidden = self.random_mask(len(targets))
        logits = self(targets.masked_fill(hidden, self.mask_token))  # (B, L, K)
        # The visible codes are ignored (index -100): the mean runs over the hidden ones only,
        # with shapes that do not depend on how many there are.
        loss = F.cross_entropy(logits.transpose(1, 2), targets.masked_fill(~hidden, -100))
        with torch.no_grad():
            acc = ((logits.argmax(-1) == targets) & hidden).sum() / hidden.sum()
        return loss, {"ce": loss.detach(), "bits_per_masked_code": loss.detach() / math.log(2),
                      "accuracy": acc}

    @torch.no_grad()
    def sample(self, n: int, temperature: float = 1.0, top_k: int | None = None,
               top_p: float | None = None, generator: torch.Generator | None = None,
               seed: int | None = None, decode_steps: int | None = None,
               choice_temperature: float | None = None) -> torch.Tensor:
        """Draw n code grids in ``decode_steps`` rounds of parallel decoding -> (n, h, w) long.

        ``temperature``, ``top_k`` and ``top_p`` shape the distribution each code is drawn
        from, as in the GPT prior; which drawn codes are kept is decided on the model's own
        probabilities, as in MaskGIT. ``decode_steps`` and ``choice_temperature`` default to
        the model's. ``seed`` (or a ``torch.Generator`` on the model's device) makes the draw
        repeat exactly.
        """
        generator = self._sampling_generator(n, temperature, generator, seed)
        steps = self.decode_steps if decode_steps is None else int(decode_steps)
        if steps < 1:
            raise ValueError(f"decode_steps must be a positive integer, got {steps}")
        noise_scale = self.choice_temperature if choice_temperature is None else float(choice_temperature)
        if noise_scale < 0:
            raise ValueError(f"choice_temperature must be >= 0, got {noise_scale}")
        device = self.head.weight.device
        L = self.block_size
        codes = torch.full((n, L), self.mask_token, dtype=torch.long, device=device)
        with evaluating(self):
            for step in range(steps):
                masked = codes == self.mask_token  # (n, L)
                logits = self(codes)  # (n, L, K)
                probs = filter_logits(logits / temperature, top_k, top_p).softmax(dim=-1)
                drawn = torch.multinomial(probs.view(-1, self.num_codes), 1, generator=generator).view(n, L)
                drawn = torch.where(masked, drawn, codes)
                # How many stay masked after this round: the schedule's share of the grid, at
                # least one while rounds remain (as in MaskGIT), and fewer than are masked now,
                # so that each round fixes at least one code and the loop ends by itself.
                scheduled = math.floor(L * float(mask_ratio((step + 1) / steps)))
                keep_masked = min(max(1, scheduled), int(masked.sum(1).min()) - 1)
                if step == steps - 1 or keep_masked == 0:
                    codes = drawn
                    break
                # Confidence: the model's own log-probability of the drawn code (before
                # temperature and top-k, which would make every kept code look certain) plus
                # Gumbel noise that fades out over the rounds; fixed codes stay fixed.
                chosen = logits.log_softmax(dim=-1).gather(-1, drawn[..., None]).squeeze(-1)
                confidence = chosen + noise_scale * (1 - (step + 1) / steps) * gumbel_noise(chosen, generator)
                confidence = confidence.masked_fill(~masked, float("inf"))
                least = confidence.topk(keep_masked, dim=1, largest=False).indices  # exactly that many
                codes = drawn.scatter(1, least, self.mask_token)
        return codes.reshape(n, *self.latent_shape)
