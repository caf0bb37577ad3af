"""Sample quality on the shapes data: a Frechet distance on features, and a valid-shape rate.

Two numbers say how good a set of generated (or reconstructed) images is:

* :func:`frechet_distance`: fit a Gaussian to the features of real images and one to the
  features of the generated images, and measure how far apart they are,

      FD = ||mu_r - mu_g||^2 + Tr(S_r + S_g - 2 (S_r S_g)^(1/2)).

  0 means the same statistics; larger is worse. It sees both quality (blurred images
  move the mean) and variety (images that all look alike shrink the covariance).
* :func:`valid_shape_rate`: the fraction of images that the same network judges to be
  clean and to hold 1 to 5 shapes. Easy to read, blind to variety.

**These are not ImageNet FID numbers.** FID uses an Inception-v3 network trained on
ImageNet; its weights cannot be downloaded on the course machines, and its features know
nothing special about flat shapes. The features here come from
:class:`~dlstudio_lite.shape_features.ShapeFeatureNet`, a small network trained on the
shapes data (shipped in ``data/checkpoints/shape_features/``, rebuilt by
``dlstudio-lite quality train``). Numbers are comparable only when computed with the same
feature network, on the same kind and number of real images (the estimate is biased
upwards for small sets: compare like with like). The Frechet computation itself is
torchmetrics' ``FrechetInceptionDistance`` with this network plugged in as its feature
extractor.

Images are ``(N, 3, H, W)`` tensors in [-1, 1], of any size (32x32 and 64x64 are what the
network was trained on), or an iterable of such batches (a ``DataLoader`` yielding
``(images, labels)`` works too).
"""
from __future__ import annotations

import math
import os
from collections.abc import Iterable
from pathlib import Path

import torch
from torch import nn

from .checkpoint import CHECKPOINTS, CheckpointError, load_checkpoint, load_model_state, rng_state, save_checkpoint
from .shape_features import MORE_THAN_FIVE, ShapeFeatureNet, check_images

FEATURE_NET_NAME = "shape_features"
FEATURE_NET_PATH = CHECKPOINTS / FEATURE_NET_NAME / "checkpoint.pt"


def load_feature_net(path: str | os.PathLike | None = None, device: str | torch.device = "cpu") -> ShapeFeatureNet:
    """The trained feature network (default: the shipped one), in eval mode, on ``device``.

    Raises :class:`~dlstudio_lite.checkpoint.CheckpointError` naming the file and what was
    expected when it is missing, damaged, or holds another model.
    """
    path = Path(path) if path is not None else FEATURE_NET_PATH
    if not path.is_file():
        raise CheckpointError(
            f"feature network checkpoint {str(path)!r} does not exist: expected the file written by "
            f"`dlstudio-lite quality train --out {path.parent}` (the course ships one in "
            f"{FEATURE_NET_PATH.parent})")
    ckpt = load_checkpoint(path)            # weights_only=True, validated
    if ckpt["model_name"] != FEATURE_NET_NAME:
        raise CheckpointError(f"checkpoint {str(path)!r} holds a {ckpt['model_name']!r} model, expected "
                              f"{FEATURE_NET_NAME!r} (written by `dlstudio-lite quality train`)")
    try:
        net = ShapeFeatureNet(**ckpt["hparams"])
    except TypeError as err:
        raise CheckpointError(f"checkpoint {str(path)!r} has hyperparameters {ckpt['hparams']} that "
                              f"ShapeFeatureNet does not take: {err}") from err
    load_model_state(net, ckpt["model"], path)
    return net.eval().to(device)


def save_feature_net(net: ShapeFeatureNet, path: str | os.PathLike, history: dict | None = None,
                     config: dict | None = None, metrics: dict | None = None) -> Path:
    """Write ``net`` as a dlstudio-lite checkpoint (atomically) that :func:`load_feature_net` reads."""
    return save_checkpoint({
        "model_name": FEATURE_NET_NAME, "hparams": dict(net.hparams), "model": net.state_dict(),
        # Not meant to be resumed: no optimizer state, which would triple the file.
        "optimizers": {}, "schedulers": {}, "step": int((metrics or {}).get("steps", 0)), "epoch": 0,
        "history": history or {}, "rng": rng_state(), "config": config or {}, "metrics": metrics or {},
    }, path)


class _Frozen(nn.Module):
    """The feature network as torchmetrics sees it: always in eval mode (like its Inception)."""

    def __init__(self, net: ShapeFeatureNet):
        super().__init__()
        self.net, self.num_features = net, net.num_features

    def train(self, mode: bool = True) -> "_Frozen":
        return super().train(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.to(self.net.feature_mean.device))


def _batches(images, batch_size: int) -> Iterable[torch.Tensor]:
    """Yield ``(B, 3, H, W)`` float batches from a tensor or an iterable of batches."""
    if isinstance(images, torch.Tensor):
        check_images(images)
        yield from images.split(batch_size)
        return
    if not isinstance(images, Iterable):
        raise TypeError(f"expected images as a (N, 3, H, W) tensor or an iterable of such batches, "
                        f"got {type(images).__name__}")
    for batch in images:
        if isinstance(batch, (tuple, list)):      # a DataLoader's (images, labels)
            batch = batch[0]
        check_images(batch)
        yield batch


def frechet_distance(real, fake, features: ShapeFeatureNet | None = None, batch_size: int = 250) -> float:
    """Frechet distance between the shape features of ``real`` and ``fake`` images.

    ``real``, ``fake``: ``(N, 3, H, W)`` tensors in [-1, 1] or iterables of batches, at
    least 2 images each (a few hundred for a stable number). ``features``: a
    :class:`ShapeFeatureNet` (default: the shipped one, :func:`load_feature_net`).
    Not ImageNet FID: see the module docstring.
    """
    from torchmetrics.image.fid import FrechetInceptionDistance   # imported here: ~2 s

    net = features if features is not None else load_feature_net()
    # sync_on_compute=False: under torchrun only rank 0 measures, and torchmetrics would
    # otherwise gather the features of every rank in compute() and wait there forever.
    metric = FrechetInceptionDistance(feature=_Frozen(net), normalize=True, sync_on_compute=False)
    metric.to(net.feature_mean.device)
    counts = {}
    for name, images, is_real in (("real", real, True), ("fake", fake, False)):
        n = 0
        for batch in _batches(images, batch_size):
            metric.update(batch.to(net.feature_mean.device, torch.float32), real=is_real)
            n += len(batch)
        counts[name] = n
    if min(counts.values()) < 2:
        raise ValueError(f"the Frechet distance needs at least 2 real and 2 fake images, got "
                         f"{counts['real']} real and {counts['fake']} fake")
    # Tiny negative values are round-off of an eigenvalue computation: the distance is >= 0.
    return max(float(metric.compute()), 0.0)


@torch.no_grad()
def judge_shapes(images, features: ShapeFeatureNet | None = None, batch_size: int = 250) -> dict[str, torch.Tensor]:
    """What the feature network thinks of each image.

    Returns a dict of ``(N,)`` tensors: ``count`` (most likely number of shapes; 6 means
    more than 5), ``damage`` (most likely index into ``DAMAGE_CLASSES``: 0 clean, 1 blur,
    2 noise, 3 colour, 4 erase, 5 blobs, 6 grey), ``severity`` (0 clean to 1 badly damaged),
    ``p_clean``, ``p_one_to_five`` (probability of 1 to 5 shapes) and ``valid`` (bool:
    ``p_clean`` and ``p_one_to_five`` both above 0.5).
    """
    net = features if features is not None else load_feature_net()
    was_training = net.training
    net.eval()
    out = {"count": [], "damage": [], "severity": [], "p_clean": [], "p_one_to_five": []}
    try:
        for batch in _batches(images, batch_size):
            count, kind, severity = net.heads(batch.to(net.feature_mean.device, torch.float32))
            p_count, p_kind = count.softmax(1), kind.softmax(1)
            for key, value in (("count", p_count.argmax(1)), ("damage", p_kind.argmax(1)),
                               ("severity", torch.sigmoid(severity)), ("p_clean", p_kind[:, 0]),
                               ("p_one_to_five", p_count[:, 1:MORE_THAN_FIVE].sum(1))):
                out[key].append(value.cpu())
    finally:
        net.train(was_training)
    if not out["count"]:
        raise ValueError("expected at least one image, got none")
    result = {k: torch.cat(v) for k, v in out.items()}
    result["valid"] = (result["p_clean"] > 0.5) & (result["p_one_to_five"] > 0.5)
    return result


def valid_shape_rate(images, features: ShapeFeatureNet | None = None, batch_size: int = 250) -> float:
    """Fraction of ``images`` judged clean and holding 1 to 5 shapes (see :func:`judge_shapes`)."""
    return float(judge_shapes(images, features, batch_size)["valid"].float().mean())


def quality_report(real, fake, features: ShapeFeatureNet | None = None) -> dict:
    """``{"fd": frechet_distance(real, fake), "valid_shape_rate": valid_shape_rate(fake),
    "shape_check": the share of fake passing the non-learned flat-shape check,
    "shape_check_why_failed": failures per reason, "shape_check_passing_kinds": regions of the
    passing images per fitted kind, "shape_check_passed": each image's verdict, a string of
    0s and 1s, "shape_check_kinds": the fitted kind of each region of each image}``
    (see :mod:`dlstudio_lite.shape_check`),
    with the feature network loaded once; tensors, not iterables (they are read twice)."""
    from .shape_check import check_shapes
    net = features if features is not None else load_feature_net()
    check = check_shapes(fake)
    return {"fd": frechet_distance(real, fake, net), "valid_shape_rate": valid_shape_rate(fake, net),
            "shape_check": check.rate, "shape_check_why_failed": check.why_failed,
            "shape_check_passing_kinds": check.passing_kinds,
            "shape_check_passed": "".join("1" if ok else "0" for ok in check.passed.tolist()),
            "shape_check_kinds": check.kinds}


def shapes_quality(test_images: torch.Tensor, images: torch.Tensor, prefix: str,
                   holes: torch.Tensor | None = None) -> dict:
    """The numbers a run records in its ``metrics.json``: ``{prefix}_fd``,
    ``{prefix}_valid_shape_rate``, ``{prefix}_shape_check`` (the non-learned check's pass
    rate) and ``quality_split`` (which real images were used); for reconstructions given the
    test images' ``holes (N, S, S)``, also ``recon_colour`` (:func:`colour_report`).

    ``test_images (N, 3, S, S)``: the shapes test split; ``images``: the run's
    reconstructions of them (``prefix="recon"``) or its samples (``prefix="sample"``).
    """
    report = quality_report(test_images, images)
    n, _, h, w = test_images.shape
    out = {f"{prefix}_fd": report["fd"], f"{prefix}_valid_shape_rate": report["valid_shape_rate"],
           f"{prefix}_shape_check": {"rate": report["shape_check"], "n": len(images),
                                     "why_failed": report["shape_check_why_failed"]},
           "quality_split": f"shapes test split: {n} images of {h}x{w}; {len(images)} {prefix} images; "
                            "shape features (dlstudio_lite.quality), not ImageNet FID"}
    if prefix == "recon":
        out["recon_shape_check"]["kinds_kept"] = recon_kinds_kept(test_images, report)
        if holes is not None:
            out["recon_colour"] = colour_report(images, test_images, holes)
    return out


def recon_kinds_kept(originals: torch.Tensor, report: dict) -> float:
    """Share of the reconstructions that pass the flat-shape check with every shape back as its
    own kind (:meth:`ShapeCheck.kinds_kept`); ``report``: :func:`quality_report` of them against
    ``originals (N, 3, H, W)``."""
    from .shape_check import ShapeCheck, check_shapes
    recon = ShapeCheck(torch.tensor([c == "1" for c in report["shape_check_passed"]]), [],
                       report["shape_check_kinds"])
    return float(recon.kinds_kept(check_shapes(originals)).float().mean())


def paired_verdicts(passed: str, other: str) -> dict:
    """Two models' flat-shape verdicts on the same images, compared image by image: ``passed``
    and ``other`` are strings of 0s and 1s (``recon_shape_check["passed"]``). Returns the
    images ``gained`` (pass here, fail there) and ``lost``, and ``p``: the two-sided sign-test
    probability of a split at least as uneven if each changed verdict were a coin toss."""
    if len(passed) != len(other) or set(passed + other) - {"0", "1"}:
        raise ValueError(f"expected two equally long strings of 0s and 1s, got lengths {len(passed)} and {len(other)}")
    gained = sum(a == "1" and b == "0" for a, b in zip(passed, other))
    lost = sum(a == "0" and b == "1" for a, b in zip(passed, other))
    n = gained + lost
    tail = sum(math.comb(n, k) for k in range(max(gained, lost), n + 1)) / 2 ** n
    return {"gained": gained, "lost": lost, "p": min(1.0, 2 * tail)}


def colour_report(reconstructed: torch.Tensor, original: torch.Tensor, holes: torch.Tensor) -> dict:
    """How well reconstructions ``(N, 3, S, S)`` keep the colours of the shapes of
    ``original`` (:func:`~dlstudio_lite.metrics.shape_colour_error`), in 0-255 levels:
    ``brightness_bias``, the mean over the shapes with no rotation hole near them of the
    signed brightness error (the mean of the three channels' errors; a systematic darkening
    shows here), its standard deviation and median over those shapes (a few shapes far off
    pull the mean, not the median), the median colour distance over all shapes, and the
    share of the colourfulness kept."""
    from .metrics import colourfulness_kept, shape_colour_error
    colours = shape_colour_error(reconstructed, original, holes=holes)
    whole = colours["hole_density"] == 0
    brightness = colours["bias"].mean(1)[whole]
    return {"brightness_bias": float(brightness.mean()) if len(brightness) else float("nan"),
            "brightness_std": float(brightness.std()) if len(brightness) > 1 else float("nan"),
            "brightness_median": float(brightness.median()) if len(brightness) else float("nan"),
            "hole_free_shapes": int(whole.sum()), "shapes": len(colours["error"]),
            "colour_error_median": float(colours["error"].median()),
            "colourfulness_kept": colourfulness_kept(colours)}
