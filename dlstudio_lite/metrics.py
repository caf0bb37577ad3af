"""Image metrics for images in [-1, 1] (the course's convention); the evaluation loop
over a dataset is ``evaluate.py``."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def mse(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean squared error over all elements (a scalar tensor)."""
    if x.shape != y.shape:
        raise ValueError(f"mse needs tensors of equal shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    return (x.float() - y.float()).pow(2).mean()


def psnr(x: torch.Tensor, y: torch.Tensor, data_range: float = 2.0) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB, averaged over the batch.

    ``x, y``: ``(B, C, H, W)`` in [-1, 1], so the default ``data_range`` (max - min) is 2.
    PSNR is computed per image and then averaged over the batch (the usual convention);
    a perfect reconstruction gives ``inf``.
    """
    if x.shape != y.shape or x.dim() != 4:
        raise ValueError(f"psnr expects two (B, C, H, W) tensors of equal shape, got "
                         f"{tuple(x.shape)} and {tuple(y.shape)}")
    per_image = (x.float() - y.float()).pow(2).flatten(1).mean(1)
    return (10 * torch.log10(data_range ** 2 / per_image)).mean()


def bits_per_dim(nll_nats: torch.Tensor, num_dims: int, data_range: float = 2.0,
                 levels: int = 256) -> torch.Tensor:
    """Convert a negative log-likelihood (in nats, per image) to bits per dimension.

    ``nll_nats`` is a continuous density's NLL for data scaled to a range of width
    ``data_range`` ([-1, 1] here). Papers report bits/dim for 8-bit data, i.e. on a
    scale where one intensity level has width 1; rescaling the data by ``levels /
    data_range`` subtracts ``num_dims * log(levels / data_range)`` from the log-density,
    hence the shift below. (Without uniform dequantisation noise this is an approximation.)
    """
    nll_8bit = nll_nats + num_dims * math.log(levels / data_range)
    return nll_8bit / (num_dims * math.log(2))


def edge_strength(x: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference between neighbouring pixels (horizontal and vertical), per
    image: ``(B, C, H, W) -> (B,)``. Blur lowers it; the ratio of a reconstruction's value to
    its original's (:func:`edge_sharpness`) is 1 when the edges are as crisp."""
    if x.dim() != 4:
        raise ValueError(f"edge_strength expects a (B, C, H, W) tensor, got shape {tuple(x.shape)}")
    x = x.float()
    dx = (x[..., :, 1:] - x[..., :, :-1]).abs().flatten(1).mean(1)
    dy = (x[..., 1:, :] - x[..., :-1, :]).abs().flatten(1).mean(1)
    return (dx + dy) / 2


def edge_sharpness(reconstructed: torch.Tensor, original: torch.Tensor) -> float:
    """Edge strength of ``reconstructed`` over that of ``original`` (both ``(B, C, H, W)``),
    summed over the batch: 1.0 is as sharp as the originals, below 1 blurrier."""
    if reconstructed.shape != original.shape:
        raise ValueError(f"edge_sharpness needs tensors of equal shape, got {tuple(reconstructed.shape)} "
                         f"and {tuple(original.shape)}")
    return float(edge_strength(reconstructed).sum() / edge_strength(original).sum().clamp_min(1e-12))


def shape_colour_error(reconstructed: torch.Tensor, original: torch.Tensor,
                       min_pixels: int = 6, holes: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Colour error per shape, for shapes images ``(B, 3, H, W)`` in [-1, 1].

    A shape of the course's data is painted in one flat colour on black, so each distinct
    non-black colour of an original with at least ``min_pixels`` interior pixels (pixels whose
    four neighbours have the same colour; edges are left to :func:`edge_sharpness`) is one
    shape; two shapes of the very same colour count as one. For each, the mean colour of
    those pixels in the reconstruction is compared with the true colour, in 0-255 units. Returns
    ``{"error": (S,) Euclidean RGB distance, "bias": (S, 3) signed mean difference per
    channel, "true": (S, 3)}`` over all S shapes found; a systematic colour error shows as
    a ``bias`` whose mean is far from zero.

    With ``holes`` (``(B, H, W)`` bool, from ``ShapesDataset(..., return_holes=True)``) the
    result also holds ``"hole_density"`` (S,): the fraction of hole pixels in the shape's
    outline grown by one pixel. A model that cannot place single black hole pixels paints
    their average with the colour instead, so its shapes come back darker the denser their
    holes are.
    """
    if reconstructed.shape != original.shape or original.dim() != 4 or original.shape[1] != 3:
        raise ValueError(f"shape_colour_error needs two (B, 3, H, W) tensors of equal shape, got "
                         f"{tuple(reconstructed.shape)} and {tuple(original.shape)}")
    if holes is not None and tuple(holes.shape) != (original.shape[0], *original.shape[2:]):
        raise ValueError(f"holes must be (B, H, W) = {(original.shape[0], *original.shape[2:])}, "
                         f"got {tuple(holes.shape)}")
    to255 = lambda t: ((t.detach().float().cpu().clamp(-1, 1) + 1) * 127.5)
    orig, rec = to255(original).round(), to255(reconstructed)
    errors, biases, trues, densities = [], [], [], []
    for i, (o, r) in enumerate(zip(orig, rec)):
        colours, which = torch.unique(o.flatten(1).T, dim=0, return_inverse=True)
        which = which.view(o.shape[1:])              # (H, W) colour index of each pixel
        interior = torch.zeros_like(which, dtype=torch.bool)
        c = which[1:-1, 1:-1]
        interior[1:-1, 1:-1] = ((c == which[:-2, 1:-1]) & (c == which[2:, 1:-1])
                                & (c == which[1:-1, :-2]) & (c == which[1:-1, 2:]))
        for k, colour in enumerate(colours):
            mask = interior & (which == k)
            if int(mask.sum()) < min_pixels or colour.max() < 20:   # background, specks
                continue
            diff = r[:, mask].mean(1) - colour
            errors.append(diff.norm())
            biases.append(diff)
            trues.append(colour)
            if holes is not None:
                region = F.max_pool2d((which == k).float()[None, None], 3, 1, 1)[0, 0] > 0
                densities.append(holes[i].cpu()[region].float().mean())
    if not errors:
        raise ValueError("no shape found in the originals: expected flat-coloured shapes on black")
    out = {"error": torch.stack(errors), "bias": torch.stack(biases), "true": torch.stack(trues)}
    if holes is not None:
        out["hole_density"] = torch.stack(densities)
    return out


def colourfulness_kept(colours: dict[str, torch.Tensor]) -> float:
    """How much of the shapes' colourfulness a reconstruction keeps, from the result of
    :func:`shape_colour_error`: the spread between the largest and the smallest channel of
    each shape's reconstructed colour, summed over the shapes, over the same for the true
    colours. 1 keeps it, 0 paints every shape grey (hue and saturation lost, brightness
    perhaps kept)."""
    spread = lambda c: (c.max(1).values - c.min(1).values).sum()   # noqa: E731
    return float(spread(colours["true"] + colours["bias"]) / spread(colours["true"]).clamp_min(1e-12))
