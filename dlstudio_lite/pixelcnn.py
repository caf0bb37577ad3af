"""PixelCNN: an autoregressive prior over a grid of code indices, with masked convolutions.

A masked convolution is an ordinary ``nn.Conv2d`` whose kernel is multiplied by a fixed
0/1 mask before every use, so that the output at a position depends only on positions that
come *earlier* in raster order (rows top to bottom, left to right within a row).

* **type A** (first layer): the centre tap is masked too, so the output at a position never
  sees the value it must predict;
* **type B** (every later layer): the centre tap is kept; the centre of a later layer holds
  features computed from earlier positions only, so keeping it leaks nothing.

On these, :class:`PixelCNN` is the gated PixelCNN of van den Oord et al. (2016): code
embeddings, a type-A gated layer, type-B gated residual layers, each with a vertical and a
horizontal stack (no blind spot, see below), optionally conditioned on another code grid
(VQ-VAE-2's bottom prior on the top codes). ``sample_vqvae2`` draws VQ-VAE-2 images from a
top and a bottom PixelCNN; ``input_dependence`` shows by gradients what an output sees.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import records_hparams

MASK_TYPES = ("A", "B")


def causal_mask(kernel_size: int, mask_type: str) -> torch.Tensor:
    """The ``(k, k)`` 0/1 float mask of a masked convolution with an odd ``kernel_size`` k.

    Ones above the centre row, and left of the centre in the centre row; the centre itself
    is 1 for type ``"B"`` and 0 for type ``"A"``.
    """
    if not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be a positive odd integer, got {kernel_size!r}")
    if mask_type not in MASK_TYPES:
        raise ValueError(f"mask_type must be one of {MASK_TYPES}, got {mask_type!r}")
    c = kernel_size // 2
    mask = torch.zeros(kernel_size, kernel_size)
    mask[:c, :] = 1.0
    mask[c, :c] = 1.0
    if mask_type == "B":
        mask[c, c] = 1.0
    return mask


class MaskedConv2d(nn.Conv2d):
    """``nn.Conv2d`` with a :func:`causal_mask` applied to its kernel; ``(B, C, H, W)`` in and out
    with 'same' padding."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, mask_type: str,
                 bias: bool = True):
        super().__init__(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=bias)
        self.mask_type = mask_type
        self.register_buffer("mask", causal_mask(kernel_size, mask_type), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)


# --- the gated PixelCNN: two stacks, no blind spot ----------------------------------------------
#
# A stack of plain masked convolutions has a *blind spot*: the region a position sees grows
# as a triangle that leans left, and the codes above and to the right of it are never seen,
# however many layers there are. The gated PixelCNN (van den Oord et al. 2016) splits every
# layer in two stacks:
#
# * the **vertical** stack sees whole rows: its output at row i covers the rows i - k//2 .. i
#   over the full kernel width (current row included), so it grows upwards in a square;
# * the **horizontal** stack sees only the current row, left of the position (type A) or up
#   to it (type B), a 1 x k masked convolution (the centre row of ``causal_mask``);
# * the vertical stack reaches the horizontal one shifted *down by one row*, so a position
#   receives rows strictly above it: nothing of its own row leaks through the vertical path.
#
# Outputs come from the horizontal stack; every layer but the first adds its input back
# (residual), which the first must not: its input holds the very code to be predicted.

def gate(x: torch.Tensor) -> torch.Tensor:
    """Gated activation ``tanh(a) * sigmoid(b)`` of the two channel halves ``(B, 2C, ...) -> (B, C, ...)``."""
    a, b = x.chunk(2, dim=1)
    return torch.tanh(a) * torch.sigmoid(b)


def down_shift(x: torch.Tensor) -> torch.Tensor:
    """Move a feature map one row down (row 0 becomes zeros): ``(B, C, H, W)`` in and out."""
    return F.pad(x, (0, 0, 1, 0))[:, :, :-1]


class GatedLayer(nn.Module):
    """One gated layer: ``(v, h, cond) -> (v', h')``, all ``(B, C, H, W)`` (``cond``: ``(B, C, H, W)``
    or None). ``mask_type`` "A" (first layer: the horizontal stack excludes the position
    itself, no residual) or "B"."""

    def __init__(self, channels: int, kernel_size: int, mask_type: str, conditional: bool = False):
        super().__init__()
        causal_mask(kernel_size, mask_type)  # validates both arguments
        c, k, p = channels, kernel_size, kernel_size // 2
        self.pad, self.mask_type = p, mask_type
        self.vertical = nn.Conv2d(c, 2 * c, (p + 1, k))       # rows i-p .. i, full width
        self.horizontal = nn.Conv2d(c, 2 * c, (1, k), padding=(0, p))
        # The centre row of the 2-d causal mask: left of the position, plus it for type B.
        self.register_buffer("h_mask", causal_mask(k, mask_type)[p:p + 1], persistent=False)
        self.v_to_h = nn.Conv2d(2 * c, 2 * c, 1)
        self.h_out = nn.Conv2d(c, c, 1)
        self.cond = nn.Conv2d(c, 4 * c, 1) if conditional else None

    def forward(self, v: torch.Tensor, h: torch.Tensor, cond: torch.Tensor | None = None):
        p = self.pad
        v_feat = self.vertical(F.pad(v, (p, p, p, 0)))        # pad left, right and top only
        h_feat = F.conv2d(h, self.horizontal.weight * self.h_mask, self.horizontal.bias,
                          padding=(0, p))
        h_feat = h_feat + self.v_to_h(down_shift(v_feat))     # rows strictly above
        if self.cond is not None:
            if cond is None:
                raise ValueError("this layer is conditional: expected a condition, got None")
            cv, ch = self.cond(cond).chunk(2, dim=1)
            v_feat, h_feat = v_feat + cv, h_feat + ch
        h_new = self.h_out(gate(h_feat))
        if self.mask_type == "B":
            h_new = h_new + h
        return gate(v_feat), h_new


class PixelCNN(nn.Module):
    """Gated PixelCNN over an ``(h, w)`` grid of code indices, optionally conditioned on
    another code grid (VQ-VAE-2's bottom prior, conditioned on the top codes).

    ``log_prob(codes, condition=None) -> (B,)`` nats per grid; ``compute_loss(x)`` with
    ``x = codes (B, h, w)``, or, for a conditional model, ``(B, 2, h, w)``: the codes and the
    condition brought to the same grid (:func:`pair_with_condition`), so that the one trainer
    and a ``TensorDataset`` serve it; ``sample(n, temperature, condition, generator)``.

    Args:
        num_codes: K, the codebook size of the codes modelled
        latent_shape: (h, w) of the code grid
        condition_codes: codebook size of the conditioning grid (0: unconditional)
        channels: width of both stacks
        n_layers: gated layers (the first of type A, the others of type B)
        kernel_size: odd kernel side of the stacks
    """

    @records_hparams
    def __init__(self, num_codes: int, latent_shape: tuple[int, int] | list[int] = (8, 8),
                 condition_codes: int = 0, channels: int = 24, n_layers: int = 4,
                 kernel_size: int = 3):
        super().__init__()
        if num_codes < 2:
            raise ValueError(f"num_codes must be at least 2, got {num_codes}")
        if len(latent_shape) != 2 or min(latent_shape) < 1:
            raise ValueError(f"latent_shape must be (h, w) with positive sizes, got {latent_shape}")
        if n_layers < 1:
            raise ValueError(f"n_layers must be at least 1, got {n_layers}")
        self.num_codes, self.condition_codes = int(num_codes), int(condition_codes)
        self.latent_shape = (int(latent_shape[0]), int(latent_shape[1]))
        self.embed = nn.Embedding(num_codes, channels)
        conditional = condition_codes > 0
        if conditional:
            self.cond_embed = nn.Embedding(condition_codes, channels)
            # Not causal: the whole conditioning grid is known before sampling starts.
            self.cond_conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.layers = nn.ModuleList(
            GatedLayer(channels, kernel_size, "A" if i == 0 else "B", conditional)
            for i in range(n_layers))
        self.head = nn.Sequential(nn.ReLU(), nn.Conv2d(channels, channels, 1), nn.ReLU(),
                                  nn.Conv2d(channels, num_codes, 1))

    @property
    def conditional(self) -> bool:
        return self.condition_codes > 0

    def _check(self, codes: torch.Tensor, num_codes: int, what: str, shape=None) -> torch.Tensor:
        if codes.dim() != 3 or (shape is not None and tuple(codes.shape[1:]) != shape):
            want = f"(B, {shape[0]}, {shape[1]})" if shape else "(B, h, w)"
            raise ValueError(f"expected {what} of shape {want}, got {tuple(codes.shape)}")
        if codes.dtype.is_floating_point:
            raise TypeError(f"expected integer {what}, got dtype {codes.dtype}")
        if codes.numel() and (codes.min() < 0 or codes.max() >= num_codes):
            raise ValueError(f"{what} must lie in [0, {num_codes}), got values in "
                             f"[{int(codes.min())}, {int(codes.max())}]")
        return codes.long()

    def _condition(self, condition: torch.Tensor | None, batch: int) -> torch.Tensor | None:
        """The conditioning grid ``(B, hc, wc)``, upsampled (nearest) to the code grid and
        embedded: ``(B, C, h, w)``."""
        if not self.conditional:
            if condition is not None:
                raise ValueError("this PixelCNN is unconditional (condition_codes=0), but a "
                                 "condition was given")
            return None
        if condition is None:
            raise ValueError(f"this PixelCNN is conditioned on a grid of {self.condition_codes} "
                             f"codes: expected a condition (B, hc, wc), got None")
        condition = upsample_codes(self._check(condition, self.condition_codes, "condition codes"),
                                   self.latent_shape)
        if condition.shape[0] != batch:
            raise ValueError(f"expected a condition for each of the {batch} grids, got "
                             f"{condition.shape[0]}")
        return self.cond_conv(self.cond_embed(condition).permute(0, 3, 1, 2))

    def forward(self, codes: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        """``codes (B, h, w)`` long -> logits ``(B, K, h, w)``; logit ``[:, :, i, j]`` depends
        only on the codes before ``(i, j)`` in raster order (and on the whole condition)."""
        codes = self._check(codes, self.num_codes, "codes", self.latent_shape)
        return self._logits(codes, self._condition(condition, codes.shape[0]))

    def _logits(self, codes: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        """The network itself, on checked codes ``(B, h', w')`` and embedded condition."""
        return self.logits_from_embedding(self.embed(codes).permute(0, 3, 1, 2), cond)

    def logits_from_embedding(self, e: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """Logits ``(B, K, h, w)`` from embedded codes ``e (B, C, h, w)``: a continuous input,
        so that gradients can show which positions an output depends on (:func:`input_dependence`)."""
        v = h = e
        for layer in self.layers:
            v, h = layer(v, h, cond)
        return self.head(h)

    def log_prob(self, codes: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        """``log p(codes)`` in nats per grid, ``(B,)``."""
        logits = self(codes, condition)
        return -F.cross_entropy(logits, codes.long(), reduction="none").flatten(1).sum(1)

    def compute_loss(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Mean cross-entropy per code. ``x``: codes ``(B, h, w)``, or ``(B, 2, h, w)`` codes and
        condition (conditional models). logs: "ce" (nats per code), "bits_per_code", "accuracy"."""
        codes, condition = split_condition(x) if self.conditional else (x, None)
        logits = self(codes, condition)
        loss = F.cross_entropy(logits, codes.long())
        with torch.no_grad():
            acc = (logits.argmax(1) == codes).float().mean()
        return loss, {"ce": loss.detach(), "bits_per_code": loss.detach() / math.log(2),
                      "accuracy": acc}

    @torch.no_grad()
    def sample(self, n: int, temperature: float = 1.0, condition: torch.Tensor | None = None,
               generator: torch.Generator | None = None, top_k: int | None = None,
               top_p: float | None = None) -> torch.Tensor:
        """Draw ``n`` code grids position by position in raster order -> ``(n, h, w)`` long.

        ``condition``: ``(n, hc, wc)`` codes for a conditional model. ``generator`` (on the
        model's device) makes the draw repeat; ``top_k``/``top_p`` as in ``prior.filter_logits``.
        """
        from .evaluate import evaluating
        from .prior import filter_logits
        if n < 1:
            raise ValueError(f"n must be a positive integer, got {n}")
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        device = self.embed.weight.device
        codes = torch.zeros(n, *self.latent_shape, dtype=torch.long, device=device)
        h, w = self.latent_shape
        with evaluating(self):
            cond = self._condition(None if condition is None else condition.to(device), n)
            for i in range(h):
                for j in range(w):
                    # Rows below i cannot influence row i (the stacks pad only at the top),
                    # so the network runs on rows 0..i: exact, and half the work on average.
                    rows = slice(0, i + 1)
                    logits = self._logits(codes[:, rows], None if cond is None else cond[:, :, rows])
                    logits = logits[:, :, i, j] / temperature
                    probs = filter_logits(logits, top_k, top_p).softmax(dim=-1)
                    codes[:, i, j] = torch.multinomial(probs, 1, generator=generator)[:, 0]
        return codes


def input_dependence(fn, x: torch.Tensor, position: tuple[int, int]) -> torch.Tensor:
    """Which positions of ``x (1, C, H, W)`` the output ``fn(x)[0, :, i, j]`` depends on, by
    gradients: ``(H, W)`` bool, True where ``d output / d x`` is not zero (summed over channels).

    The output channels are mixed with random weights first, so that no channel's gradient
    can cancel another's by accident."""
    x = x.detach().clone().requires_grad_(True)
    out = fn(x)
    i, j = position
    weights = torch.randn(out.shape[1], generator=torch.Generator().manual_seed(0)).to(out)
    (out[0, :, i, j] * weights).sum().backward()
    return x.grad[0].abs().sum(0) > 0


def upsample_codes(codes: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """Nearest-neighbour upsampling of a code grid ``(B, hc, wc) -> (B, h, w)`` (integer factors)."""
    (hc, wc), (h, w) = codes.shape[1:], shape
    if h % hc or w % wc:
        raise ValueError(f"the condition grid {hc}x{wc} must divide the code grid {h}x{w}")
    return codes.repeat_interleave(h // hc, dim=1).repeat_interleave(w // wc, dim=2)


def pair_with_condition(codes: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
    """Stack codes ``(B, h, w)`` and the condition (upsampled to ``(h, w)``) -> ``(B, 2, h, w)``,
    the training input of a conditional PixelCNN (nearest upsampling loses nothing: each
    conditioning code is repeated, and the model's own embedding is applied per position)."""
    return torch.stack([codes.long(), upsample_codes(condition.long(), tuple(codes.shape[1:]))], 1)


def split_condition(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The inverse of :func:`pair_with_condition`: ``(B, 2, h, w) -> (codes, condition)``."""
    if x.dim() != 4 or x.shape[1] != 2:
        raise ValueError(f"a conditional PixelCNN trains on (B, 2, h, w) codes and condition "
                         f"(pair_with_condition), got {tuple(x.shape)}")
    return x[:, 0], x[:, 1]


@torch.no_grad()
def sample_vqvae2(vq: nn.Module, top_prior: PixelCNN, bottom_prior: PixelCNN, n: int,
                  temperature: float = 1.0, generator: torch.Generator | None = None,
                  **sample_kwargs) -> torch.Tensor:
    """New VQ-VAE-2 images: top codes from ``top_prior``, bottom codes from ``bottom_prior``
    given them, both decoded -> ``(n, C, H, W)`` in [-1, 1]."""
    from .evaluate import evaluating
    for prior, level in ((top_prior, "top"), (bottom_prior, "bottom")):
        if prior.num_codes != vq.num_codes[level] or prior.latent_shape != vq.latent_shapes[level]:
            raise ValueError(f"the {level} prior models {prior.latent_shape} grids of "
                             f"{prior.num_codes} codes, but the VQ-VAE-2's {level} level has "
                             f"{vq.latent_shapes[level]} grids of {vq.num_codes[level]}")
    if top_prior.conditional or not bottom_prior.conditional:
        raise ValueError("expected an unconditional top prior and a bottom prior conditioned "
                         "on the top codes (train pixelcnn --level top / --level bottom)")
    top = top_prior.sample(n, temperature, generator=generator, **sample_kwargs)
    bottom = bottom_prior.sample(n, temperature, condition=top, generator=generator, **sample_kwargs)
    with evaluating(vq):
        return vq.decode_codes(top, bottom).clamp(-1, 1)
