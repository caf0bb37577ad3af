"""A non-learned check that an image is made of flat-coloured shapes.

The learned valid-shape rate (:mod:`dlstudio_lite.quality`) can be fooled: a network
trained to tell clean images from a handful of damages may call a soft two-colour blob
"clean". This check learns nothing. It accepts an image when all of these hold:

1. **no specks**: hardly any bright pixel stands alone on the dark background;
2. **flat colour regions**: after a 3x3 median (which removes the dataset's single-pixel
   rotation holes, see :mod:`dlstudio_lite.data`, but keeps edges and colour gradients),
   the bright pixels group into 1 to ``max_regions`` connected regions of one colour each
   (within ``colour_radius`` levels; a shape cut in two by another counts twice), every
   region's colours spread by at most ``flat_spread`` levels, and the bright pixels in no
   region (a soft edge, a smear) number at most ``soft_edge`` per outline pixel;
3. **every outline fits one of the five shapes** (rectangle, triangle, disk, oval, star):
   the regions are peeled from the top, as a painter's order in reverse. The topmost
   shape is whole, so a template of some kind, placed from the region's moments (and,
   if needed, refined by a small random search), must contain the region's outline and
   cover neither background nor any region not yet peeled, up to ``fit_error`` of the
   outline, with ``margin`` pixels of slack for the rounding of the rotation. Once
   peeled, a region's pixels are free for the templates below it (overlaps are allowed:
   a shape may lie under another).

The templates are the generator's own shapes (``data._inside``). Images are
``(N, 3, H, W)`` in [-1, 1]; 200 images of 64x64 take a few seconds on a CPU.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from .data import SHAPE_NAMES, _inside

_CHEAPEST_FIRST = ("disk", "oval", "rectangle", "triangle", "star")   # fewest template edges first
DARK = 60           # max channel below this (0-255): background; every shape has a channel >= 170


@dataclass(frozen=True)
class Tolerances:
    """How strict :func:`check_shapes` is (colour levels are 0-255, shares are of pixels)."""
    colour_radius: float = 24.0   # L-inf distance from a region's colour that still belongs to it
    flat_spread: float = 6.0      # mean absolute deviation from the region's median colour
    soft_edge: float = 1.0        # pixels in no region (soft edges, specks) per outline pixel
    specks: float = 0.002         # isolated bright pixels, as a share of all pixels
    max_regions: int = 8          # five shapes, a few of them cut in two by others
    fit_error: float = 0.12       # share of a region's outline the best template gets wrong
    margin: float = 0.75          # pixels of slack around a template (rounding of the rotation)


@dataclass
class ShapeCheck:
    """Result of :func:`check_shapes` for N images."""
    passed: torch.Tensor                     # (N,) bool
    reasons: list[str]                       # "" for a pass, else why the image failed
    kinds: list[list[str]] = field(default_factory=list)  # best-fitting shape of each region

    @property
    def why_failed(self) -> dict[str, int]:
        """How many images failed for each kind of reason (the words before the first colon)."""
        return summary([self])

    @property
    def passing_kinds(self) -> dict[str, int]:
        """How many regions of the passing images were fitted as each kind of shape: the
        check accepts a small flat round blob as an oval, so a pass says flat, not which shape."""
        counts = Counter(k for ok, kinds in zip(self.passed.tolist(), self.kinds) if ok for k in kinds)
        return dict(sorted(counts.items()))

    @property
    def rate(self) -> float:
        """Share of images that pass."""
        return float(self.passed.float().mean())

    def kinds_kept(self, originals: "ShapeCheck") -> torch.Tensor:
        """(N,) bool: images that pass with the same shapes, kind for kind, as the ``originals``
        they reconstruct (which must pass too). A star or a rectangle that comes back as a
        flat round blob passes the check as a disk or an oval, but not this."""
        if len(self.passed) != len(originals.passed):
            raise ValueError(f"expected the check of the {len(self.passed)} originals, "
                             f"got one of {len(originals.passed)} images")
        if not len(self.kinds) == len(self.passed) == len(originals.kinds):
            raise ValueError(f"expected the fitted kinds of all {len(self.passed)} images on both sides, "
                             f"got {len(self.kinds)} and {len(originals.kinds)}")
        return torch.tensor([ok and ok_original and sorted(kinds) == sorted(original)
                             for ok, ok_original, kinds, original in zip(
                                 self.passed.tolist(), originals.passed.tolist(), self.kinds, originals.kinds)],
                            dtype=torch.bool)


# --------------------------------------------------------------------------- templates
@lru_cache(maxsize=None)
def _unit_moments(kind: str) -> tuple[float, float, float]:
    """Centroid offset along v and variances along u and v of the shape with a = b = 1."""
    v, u = np.mgrid[-1.2:1.2:481j, -1.2:1.2:481j].reshape(2, -1)
    keep = _inside(kind, 1.0, 1.0, u, v)
    u, v = u[keep], v[keep]
    return float(v.mean()), float(u.var()), float(v.var())


def _template_inside(kind: str, params: np.ndarray, xs: np.ndarray, ys: np.ndarray,
                     grow: float) -> np.ndarray:
    """Which points ``(xs, ys)`` (P,) lie inside each template ``params (C, 5)`` =
    (cx, cy, theta, a, b), with a and b grown by ``grow`` pixels -> (C, P) bool."""
    cx, cy, th, a, b = (params[:, i:i + 1] for i in range(5))
    c, s = np.cos(th), np.sin(th)
    dx, dy = xs[None] - cx, ys[None] - cy
    u = (c * dx + s * dy) / np.maximum(a + grow, 0.3)
    v = (-s * dx + c * dy) / np.maximum(b + grow, 0.3)
    unit = "oval" if kind == "disk" else kind      # the disk is an oval with a = b
    return _inside(unit, 1.0, 1.0, u.ravel(), v.ravel()).reshape(u.shape)


def _cost(kind, params, outline, background, margin) -> np.ndarray:
    """Outline pixels outside the grown template plus background pixels inside the shrunk
    one, per template ``params (C, 5)`` -> (C,)."""
    miss = ~_template_inside(kind, params, outline[0], outline[1], margin)
    extra = _template_inside(kind, params, background[0], background[1], -margin)
    return miss.sum(1) + extra.sum(1)


def _moment_templates(kind: str, mask: np.ndarray) -> np.ndarray:
    """Templates of ``kind`` whose moments match those of ``mask (H, W)`` -> (C, 5)."""
    ys, xs = np.nonzero(mask)
    mx, my = xs.mean(), ys.mean()
    dx, dy = xs - mx, ys - my
    cov = np.cov(np.stack([dx, dy])) + np.eye(2) / 12 if len(xs) > 1 else np.eye(2) / 12
    lam, vec = np.linalg.eigh(cov)                 # ascending
    lam = np.maximum(lam, 1e-3)
    off, var_u, var_v = _unit_moments(kind)
    cands = []
    if kind == "disk":
        a = np.sqrt(lam.mean() / var_u)
        cands.append((mx, my, 0.0, a, a))
    elif kind == "star":
        # The tips point at theta - 90 degrees + k 72 degrees: the 5-fold angular moment
        # of the pixels gives theta (a few neighbours cover small shapes' rounding).
        m5 = np.sum((dx + 1j * dy) ** 5)
        th = np.angle(m5) / 5 + np.pi / 2
        a = np.sqrt(lam.mean() / var_u)
        for t in np.radians([-8, -4, 0, 4, 8]):
            cands.append((mx, my, th + t, a, a))
    else:
        for major_on_u in (True, False):
            lu, lv = (lam[1], lam[0]) if major_on_u else (lam[0], lam[1])
            e = vec[:, 1] if major_on_u else vec[:, 0]
            a, b = np.sqrt(lu / var_u), np.sqrt(lv / var_v)
            base = np.arctan2(e[1], e[0])
            turns = [0.0, np.pi] if kind == "triangle" else [0.0]
            if kind == "rectangle" and lam[1] < 1.3 * lam[0]:   # a square's axes are not fixed by its moments
                turns = np.arange(6) * np.pi / 12
            for t in turns:
                th = base + t
                # the triangle's centroid lies off its centre, along v
                cands.append((mx + np.sin(th) * off * b, my - np.cos(th) * off * b, th, a, b))
    return np.array(cands, dtype=float)


def _fit(masks, outline, background, tol: "Tolerances", rng, search: bool) -> tuple[str, float]:
    """(kind, share of the outline wrong) of the best template: placed from the moments of
    each of ``masks``, cheapest kinds first, stopping at the first that fits; else refined by
    a random search around the best placements."""
    budget = tol.fit_error * max(len(outline[0]), 1)
    best = {}
    for kind in sorted(SHAPE_NAMES, key=_CHEAPEST_FIRST.index):
        for mask in masks:
            cands = _moment_templates(kind, mask)
            cost = _cost(kind, cands, outline, background, tol.margin)
            i = int(cost.argmin())
            if kind not in best or cost[i] < best[kind][0]:
                best[kind] = (int(cost[i]), cands[i])
        if best[kind][0] <= budget:
            return kind, best[kind][0] / max(len(outline[0]), 1)
    if not search:
        kind, (cost, _) = min(best.items(), key=lambda kv: kv[1][0])
        return kind, cost / max(len(outline[0]), 1)
    kind, cost = _refine(best, outline, background, tol, rng, stop=budget)
    return kind, cost / max(len(outline[0]), 1)


def _refine(best, outline, background, tol, rng, stop, keep=3, rounds=8, tries=24):
    """Random search around the placements of the ``keep`` best kinds (for regions partly
    hidden by others, whose moments place the template off) -> (kind, cost)."""
    out = (None, np.inf)
    for kind, (cost, params) in sorted(best.items(), key=lambda kv: kv[1][0])[:keep]:
        for r in range(rounds):
            noise = rng.normal(size=(tries, 5)) * np.array([2.0, 2.0, 0.2, 0.15, 0.15]) * 0.7 ** r
            cands = np.repeat(params[None], tries, 0)
            cands[:, :3] += noise[:, :3]
            cands[:, 3:] *= np.exp(noise[:, 3:])
            if kind in ("disk", "star"):
                cands[:, 4] = cands[:, 3]
            costs = _cost(kind, cands, outline, background, tol.margin)
            j = int(costs.argmin())
            if costs[j] < cost:
                cost, params = int(costs[j]), cands[j]
            if cost <= stop:
                return kind, cost
        if cost < out[1]:
            out = (kind, cost)
    return out


# --------------------------------------------------------------------------- regions
def _neighbour_count(mask: torch.Tensor) -> torch.Tensor:
    """For (N, H, W) bool, how many of the 8 neighbours are set -> (N, H, W)."""
    m = mask.float()[:, None]
    return (F.conv2d(F.pad(m, (1, 1, 1, 1)), torch.ones(1, 1, 3, 3)) - m)[:, 0].round().long()


def _components(cluster: torch.Tensor) -> torch.Tensor:
    """8-connected components of equal ``cluster`` ids (N, H, W) (-1: none) -> labels (0: none).

    Label propagation: each pixel takes the largest label among its same-cluster
    neighbours until nothing changes (torch, scipy and PIL offer no labelling here)."""
    n, h, w = cluster.shape
    labels = torch.where(cluster >= 0, torch.arange(1, n * h * w + 1).view(n, h, w), 0)
    pc = F.pad(cluster, (1, 1, 1, 1), value=-2)
    shifts = [(dy, dx) for dy in (0, 1, 2) for dx in (0, 1, 2) if (dy, dx) != (1, 1)]
    same = [pc[:, dy:dy + h, dx:dx + w] == cluster for dy, dx in shifts]
    while True:
        pl = F.pad(labels, (1, 1, 1, 1))
        new = labels.clone()
        for (dy, dx), ok in zip(shifts, same):
            new = torch.where(ok, torch.maximum(new, pl[:, dy:dy + h, dx:dx + w]), new)
        new = torch.where(cluster >= 0, new, 0)
        if torch.equal(new, labels):
            return labels
        labels = new


def _colour_clusters(pixels: np.ndarray, radius: float, min_pixels: int) -> np.ndarray:
    """Colours (K, 3) found by repeatedly taking the densest colour and removing every pixel
    within ``radius`` of it."""
    centres, rest = [], pixels
    while len(rest) >= min_pixels:
        q = (rest // 16).astype(np.int64)
        _, inv, counts = np.unique(q[:, 0] * 256 + q[:, 1] * 16 + q[:, 2], return_inverse=True,
                                   return_counts=True)
        densest = inv.ravel() == counts.argmax()
        c = rest[densest].mean(0)
        for _ in range(3):                  # settle on the middle of the dense colour
            near = np.abs(rest - c).max(1) <= radius
            c = np.median(rest[near], 0)
        if (np.abs(rest - c).max(1) <= radius).sum() < min_pixels:
            break
        centres.append(c)
        # Everything within the radius goes: a smooth colour gradient becomes few wide
        # bands whose spread the flatness test sees (not many narrow flat ones).
        rest = rest[(np.abs(rest - c).max(1) > radius) & ~densest]
    return np.array(centres).reshape(-1, 3)


def check_shapes(images: torch.Tensor, tol: Tolerances = Tolerances(), seed: int = 0) -> ShapeCheck:
    """Check each image of ``images (N, 3, H, W)`` in [-1, 1] (see the module docstring).

    Returns a :class:`ShapeCheck`: per-image pass/fail, the reason of each failure, the
    best-fitting kind of each region, and the share that passes (``.rate``).
    """
    from .shape_features import check_images
    check_images(images)
    raw = (images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5
    n, _, h, w = raw.shape
    # Specks: bright pixels with no bright neighbour. A real image has none, and the
    # median filter below would hide them.
    lit = raw.amax(1) >= DARK
    specks = (lit & (_neighbour_count(lit) == 0)).flatten(1).sum(1)
    # A 3x3 median removes the single-pixel rotation holes (and a reconstruction's
    # pixel-level texture) but keeps edges, corners and colour gradients.
    x = F.unfold(raw, 3, padding=1).view(n, 3, 9, h, w).median(2).values.permute(0, 2, 3, 1)
    min_pixels = max(3, round(h * w / 512))         # 8 at 64x64, 3 at 32x32
    bright = x.amax(-1) >= DARK
    # dark pixels with most neighbours bright are rotation holes, not background
    solid_dark = ~bright & (_neighbour_count(bright) <= 4)
    xn = x.numpy()
    cluster = torch.full((n, h, w), -1, dtype=torch.long)
    for i in range(n):
        pix = xn[i][bright[i].numpy()]
        centres = _colour_clusters(pix, tol.colour_radius, min_pixels)
        if len(centres) == 0:
            continue
        dist = np.abs(pix[:, None] - centres[None]).max(2)
        k = dist.argmin(1)
        k[dist.min(1) > tol.colour_radius] = -1
        cluster[i][bright[i]] = torch.from_numpy(k)
    labels = _components(cluster)
    passed, reasons, kinds = [], [], []
    for i in range(n):
        if specks[i] > tol.specks * h * w:
            ok, why, found = False, f"specks: {int(specks[i])} isolated bright pixels", []
        else:
            # a fresh random stream per image: its verdict does not depend on the batch around it
            ok, why, found = _judge(xn[i], bright[i].numpy(), solid_dark[i].numpy(), labels[i].numpy(),
                                    tol, min_pixels, np.random.default_rng(seed))
        passed.append(ok)
        reasons.append(why)
        kinds.append(found)
    return ShapeCheck(torch.tensor(passed, dtype=torch.bool), reasons, kinds)


def _judge(img, bright, solid_dark, labels, tol, min_pixels, rng):
    """(passed, reason, kinds) for one image: ``img (H, W, 3)`` 0-255, masks (H, W)."""
    ids, sizes = np.unique(labels[labels > 0], return_counts=True)
    holes = ~solid_dark & ~bright
    masks = {}
    for r, size in zip(ids, sizes):
        mask = labels == r
        # A region needs an inside: a ring of in-between colours along a soft edge has none.
        if size >= min_pixels and _erode4(mask | holes & _dilate(mask, 1)).any():
            masks[int(r)] = mask
    if not masks:
        return False, "no shape: no flat colour region", []
    if len(masks) > tol.max_regions:
        return False, f"too many regions: {len(masks)} (at most {tol.max_regions})", []
    in_region = np.logical_or.reduce(list(masks.values()))
    loose = bright & ~in_region
    outline = sum(int((m & ~_erode4(m)).sum()) for m in masks.values())
    width = loose.sum() / outline
    if width > tol.soft_edge:
        return False, (f"soft edges: {width:.2f} pixels in no region per outline pixel "
                       f"(at most {tol.soft_edge})"), []
    for mask in masks.values():
        colours = img[mask]
        spread = float(np.abs(colours - np.median(colours, 0)).mean(0).max())
        if spread > tol.flat_spread:
            return False, f"not flat: a region's colours spread by {spread:.1f} levels (at most {tol.flat_spread})", []
    # Peel the regions from the top: the topmost shape is whole, so its template may cover
    # no other region; once it fits, its pixels may hide parts of the regions below it.
    # Dark pixels inside a shape (rotation holes) and soft-edge pixels are free throughout.
    free = ~solid_dark & ~bright | loose
    remaining, peeled, kinds, search = dict(masks), [], [], False
    while remaining:
        fitted, worst = [], None
        for r, mask in remaining.items():
            others = np.logical_or.reduce([m for q, m in remaining.items() if q != r] + [np.zeros_like(mask)])
            kind, share = _fit_region(mask, free, peeled, solid_dark | others, tol, rng, search)
            if share <= tol.fit_error:
                fitted.append(r)
                kinds.append(kind)
                if search:
                    break           # back to the cheap fits for the rest
            elif worst is None or share < worst[1]:
                worst = (kind, share)
        if fitted:
            peeled += [remaining.pop(r) for r in fitted]
            search = False
        elif not search:
            search = True
        else:
            return False, (f"outline fits no shape: {len(remaining)} region(s) (closest: {worst[0]}, "
                           f"{worst[1]:.0%} of the outline off)"), kinds
    return True, "", kinds


def _fit_region(mask, free, peeled, forbidden, tol, rng, search):
    """(kind, share of the outline off) of the best template for one region."""
    filled = mask | (free & _dilate(mask, 1))
    outline = np.nonzero(mask & ~_erode(filled, 1))
    # peeled regions within two pixels may hide part of this one
    near = _dilate(mask, 2)
    hiding = np.logical_or.reduce([m for m in peeled if (m & near).any()] + [np.zeros_like(mask)])
    background = np.nonzero(forbidden & ~mask & _dilate(mask | hiding, 3))
    outline = (outline[1].astype(float), outline[0].astype(float))
    background = (background[1].astype(float), background[0].astype(float))
    masks = (filled, filled | hiding) if hiding.any() else (filled,)
    return _fit(masks, outline, background, tol, rng, search)


def _dilate(mask: np.ndarray, r: int) -> np.ndarray:
    if r == 0:
        return mask
    t = torch.from_numpy(mask).float()[None, None]
    return (F.max_pool2d(t, 2 * r + 1, 1, r)[0, 0] > 0).numpy()


def _erode(mask: np.ndarray, r: int) -> np.ndarray:
    return ~_dilate(~mask, r)


def _erode4(mask: np.ndarray) -> np.ndarray:
    """Pixels of ``mask`` whose four neighbours are in it too."""
    m = np.pad(mask, 1)
    return mask & m[:-2, 1:-1] & m[2:, 1:-1] & m[1:-1, :-2] & m[1:-1, 2:]


def summary(checks: list[ShapeCheck]) -> dict[str, int]:
    """Failures per kind of reason (the words before the first colon), over several checks."""
    counts: dict[str, int] = {}
    for check in checks:
        for reason in check.reasons:
            if reason:
                key = reason.split(":")[0]
                counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))
