"""The decoder's likelihood ``p(x | z)``: what the ELBO's reconstruction term assumes about
a pixel, and so which image the decoder draws.

``"gaussian"`` (the lecture's): the decoder outputs the image itself and the term is the
mean squared error, a Gaussian of fixed variance up to constants. The image that minimises
it is the *mean* of what the code allows. Where the code cannot say on which side of a pixel
an edge runs, that mean is a blend of shape and background colour: a soft edge, one or two
pixels wide, and a flat fill with some texture on it.

``"mixture"``: the decoder outputs, per pixel, ``K`` candidate colours, their weights and
one scale (``4K + 1`` channels), and the term is the negative log-likelihood of a mixture
of ``K`` logistic distributions over the 256 levels of a pixel (PixelCNN++'s likelihood,
Salimans et al. 2017, without its coupling of the channels). The image drawn is the *mode*,
the candidate with the largest weight: an uncertain edge pixel comes back as shape or as
background, never as their blend.

Output layout of a mixture decoder, ``(B, 4K + 1, H, W)``: ``K`` RGB means (channels
``0 .. 3K-1``, candidate by candidate), ``K`` weight logits, one log scale shared by the
candidates and channels.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

LIKELIHOODS = ("gaussian", "mixture")
BIN = 2 / 255                  # the width of one of the 256 levels in [-1, 1]
LOG_SCALE_RANGE = (-7.0, 1.0)  # e^-7 is a tenth of a level: narrower adds nothing


def check_likelihood(likelihood: str, components: int) -> None:
    """Raise ``ValueError`` for an unknown likelihood or a mixture of fewer than 2 candidates."""
    if likelihood not in LIKELIHOODS:
        raise ValueError(f"unknown likelihood {likelihood!r}: expected one of {LIKELIHOODS}")
    if likelihood == "mixture" and components < 2:
        raise ValueError(f"a mixture likelihood needs components >= 2, got {components}")


def output_channels(likelihood: str, channels: int, components: int) -> int:
    """Channels of the decoder's output for images of ``channels`` channels."""
    check_likelihood(likelihood, components)
    return channels if likelihood == "gaussian" else components * (channels + 1) + 1


def _split(params: torch.Tensor, components: int):
    """``(B, K(C+1)+1, H, W) -> means (B, K, C, H, W), logits (B, K, H, W), log_scale (B, 1, H, W)``."""
    b, n, h, w = params.shape
    c = (n - 1) // components - 1
    if c < 1 or n != components * (c + 1) + 1:
        raise ValueError(f"expected mixture parameters with K*(C+1)+1 channels for K={components}, "
                         f"got {n} channels")
    means = params[:, :components * c].view(b, components, c, h, w)
    logits = params[:, components * c:components * (c + 1)]
    log_scale = params[:, -1:].clamp(*LOG_SCALE_RANGE)
    return means, logits, log_scale


def mixture_nll(params: torch.Tensor, x: torch.Tensor, components: int) -> torch.Tensor:
    """Negative log-likelihood of images ``x (B, C, H, W)`` under the mixture ``params``,
    in nats per dimension (pixel and channel), averaged over the batch.

    The data are discrete (256 levels, ``BIN`` apart in [-1, 1]), so each candidate gives a
    level the probability of its bin, as PixelCNN++ does: a candidate that has a pixel right
    to within its level has probability near 1 there and stops pulling, where a density would
    keep sharpening without limit (and its gradients, growing as 1 / scale^2, would drown the
    small ones that teach the decoder a shape's colour)."""
    means, logits, log_scale = _split(params, components)
    if means.shape[2:] != x.shape[1:] or means.shape[0] != x.shape[0]:
        raise ValueError(f"mixture parameters for images {(means.shape[0], *means.shape[2:])} "
                         f"do not match the images {tuple(x.shape)}")
    centred = x.unsqueeze(1) - means                                     # (B, K, C, H, W)
    inv = torch.exp(-log_scale).unsqueeze(1)
    plus, minus = inv * (centred + BIN / 2), inv * (centred - BIN / 2)
    # log P(bin) = log(sigmoid(plus) - sigmoid(minus)); the lowest and highest levels take
    # the tails below and above them; in between, computed stably from minus and plus.
    log_bin = torch.where(
        x.unsqueeze(1) < -1 + BIN / 2, F.logsigmoid(plus),
        torch.where(x.unsqueeze(1) > 1 - BIN / 2, F.logsigmoid(-minus),
                    _log_sigmoid_difference(plus, minus)))
    log_p = torch.logsumexp(log_bin.sum(2) + F.log_softmax(logits, 1), 1)   # (B, H, W)
    return -log_p.mean() / x.shape[1]


def _log_sigmoid_difference(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``log(sigmoid(a) - sigmoid(b))`` for ``a > b``, without cancellation:
    ``= logsigmoid(a) + log1p(-exp(b - a)) + logsigmoid(-b)``."""
    return F.logsigmoid(a) + F.logsigmoid(-b) + torch.log1p(-torch.exp((b - a).clamp(max=-1e-6)))


def mixture_mode(params: torch.Tensor, components: int) -> torch.Tensor:
    """The image a mixture decoder draws, ``(B, C, H, W)`` in [-1, 1]: at each pixel, the
    mean of the candidate with the largest weight, clamped to [-1, 1] (a candidate beyond an
    end level gives that level all its probability). The gradient reaches that candidate's
    mean only."""
    means, logits, _ = _split(params, components)
    pick = logits.argmax(1)[:, None, None].expand(-1, 1, means.shape[2], -1, -1)   # (B, 1, C, H, W)
    return means.gather(1, pick).squeeze(1).clamp(-1, 1)
