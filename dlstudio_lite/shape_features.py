"""A small network that knows what a clean shapes image looks like.

FID measures sample quality with the features of an ImageNet Inception network. Those
weights cannot be downloaded on the course machines, and ImageNet features say little
about five flat shapes on black anyway. So the course trains its own feature network on
the shapes data (see :mod:`dlstudio_lite.quality` for the measures built on it).

The network reads an image and answers three questions, one linear head each:

* **count**: how many shapes? Classes 0, 1, ..., 5 and "more than 5" (index 6).
* **damage**: clean, or which damage? Classes :data:`DAMAGE_CLASSES`.
* **severity**: how much damage, from 0 (clean) to 1 (the most seen in training)?

It learns "damaged" from negatives made on the fly from real images (:func:`damage`):
blurred, noised, colour-cast, faded towards grey, partly erased (pixels knocked out of
the shapes), and smooth rainbow-blob images that hold no shape at all. Changes below what
a viewer notices (:data:`TOLERATED`) are shown as clean. Empty images (count 0) and
pastes of two images (up to 10 shapes, "more than 5" when over 5) teach the count head
the ends of the range. The 64-d vector before the heads is the *feature* used for the
Frechet distance; it is standardised with the mean and standard deviation of clean
training images, so one unit is one standard deviation of real data. The severity head
matters for that: a network trained only to tell clean from damaged maps every damaged
image to about the same place, and the distance stops growing with the damage; one that
must also say *how much* keeps features that grow with it.

Inputs of any size are resized to 64x64 inside the network (nearest-neighbour, so a
32x32 quick-mode image keeps its hard edges); training mixes native 64x64 images with
upsampled 32x32 ones, so both sizes are in-distribution.
"""
from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

MORE_THAN_FIVE = 6                 # count class for images with more than 5 shapes
NUM_COUNT_CLASSES = 7              # 0, 1, ..., 5 shapes and "more than 5"
DAMAGES = ("blur", "noise", "colour", "erase", "blobs", "grey")
DAMAGE_CLASSES = ("clean",) + DAMAGES
# Training range of each damage's level; severity = level / top of the range. Each range
# starts where a viewer first calls the image damaged (a blur of 0.8 pixel, a visible cast).
DAMAGE_RANGES = {"blur": (0.8, 4.0), "noise": (0.08, 0.6), "colour": (0.25, 0.9), "erase": (0.1, 0.6),
                 "blobs": (1.0, 1.0), "grey": (0.4, 1.0)}
# Below those levels a change is not damage: half of the clean training images get one of
# these imperceptible changes (level drawn up to the value), still labelled clean. Without
# them the net would learn that "clean" means pixel-exact, and call every decoder's output
# (never pixel-exact) damaged; with them, "clean" means what a viewer would call clean.
TOLERATED = {"blur": 0.45, "noise": 0.03, "colour": 0.12, "grey": 0.1}
INPUT_SIZE = 64


class ShapeFeatureNet(nn.Module):
    """Conv net: image ``(B, 3, H, W)`` in [-1, 1] -> features ``(B, num_features)``.

    ``heads(x)`` gives ``(count_logits (B, 7), damage_logits (B, 6), severity_logit (B,))``. ``hparams`` holds the
    constructor arguments, so a checkpoint rebuilds it as ``ShapeFeatureNet(**hparams)``.
    """

    def __init__(self, width: int = 16, num_features: int = 64):
        super().__init__()
        self.hparams = {"width": width, "num_features": num_features}
        self.num_features = num_features   # torchmetrics' FID reads this attribute
        w = width

        def conv(cin, cout, stride):
            return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

        # The first layer runs at full resolution: holes, noise and blur are one-pixel
        # details that a strided first layer would skip over. It is narrow because at 64x64
        # it costs the most.
        self.body = nn.Sequential(*conv(3, w // 2, 1), *conv(w // 2, 2 * w, 2), *conv(2 * w, 4 * w, 2),
                                  *conv(4 * w, 4 * w, 2), *conv(4 * w, 4 * w, 2))   # 64 -> 4x4
        self.embed = nn.Linear(2 * 4 * w, num_features)            # mean- and max-pooled
        self.count_head = nn.Linear(num_features, NUM_COUNT_CLASSES)
        self.damage_head = nn.Linear(num_features, len(DAMAGE_CLASSES))
        self.severity_head = nn.Linear(num_features, 1)
        # Statistics of clean training images' features, set after training.
        self.register_buffer("feature_mean", torch.zeros(num_features))
        self.register_buffer("feature_std", torch.ones(num_features))

    def _raw(self, x: torch.Tensor) -> torch.Tensor:
        check_images(x)
        if x.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
            up = x.shape[-1] < INPUT_SIZE
            x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="nearest" if up else "area")
        h = self.body(x.clamp(-1, 1))
        return self.embed(torch.cat([h.mean((2, 3)), h.amax((2, 3))], 1))

    def heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(count_logits (B, 7), damage_logits (B, 6), severity_logit (B,))`` for ``x (B, 3, H, W)``."""
        f = self._raw(x)
        return self.count_head(f), self.damage_head(f), self.severity_head(f).squeeze(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Standardised features ``(B, num_features)``."""
        return (self._raw(x) - self.feature_mean) / self.feature_std


def check_images(x) -> None:
    """Raise unless ``x`` is a float ``(B, 3, H, W)`` tensor of images in [-1, 1]."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"expected images as a torch.Tensor (B, 3, H, W), got {type(x).__name__}")
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"expected RGB images (B, 3, H, W), got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"expected float images in [-1, 1], got dtype {x.dtype} "
                        f"(for uint8 pixels use x.float() / 127.5 - 1)")
    if min(x.shape[-2:]) < 8:
        raise ValueError(f"expected images of at least 8x8 pixels, got {tuple(x.shape[-2:])}")
    if x.numel() and float(x.detach().abs().max()) > 1.5:
        raise ValueError(f"expected images in [-1, 1] (normalised with mean 0.5, std 0.5), got values "
                         f"from {float(x.min()):.3g} to {float(x.max()):.3g}")


# --------------------------------------------------------------------------- damage
def blob_images(n: int, size: int = 64, generator: torch.Generator | None = None) -> torch.Tensor:
    """``n`` images of smooth rainbow blobs on black: colour and outline, but no shape."""
    g = generator
    cells = int(torch.randint(3, 7, (1,), generator=g))
    colour = F.interpolate(torch.rand(n, 3, cells, cells, generator=g) * 2 - 1, size=size,
                           mode="bicubic", align_corners=False)
    field = F.interpolate(torch.rand(n, 1, cells, cells, generator=g), size=size, mode="bicubic",
                          align_corners=False)
    threshold = torch.rand(n, 1, 1, 1, generator=g) * 0.3 + 0.45
    return torch.where(field > threshold, colour.clamp(-1, 1), torch.full_like(colour, -1.0))


def damage(images: torch.Tensor, kind: str, level: float, seed: int = 0) -> torch.Tensor:
    """Damaged copies of ``images (B, 3, H, W)`` in [-1, 1]; ``level`` 0 leaves them intact.

    ``kind`` and the meaning of ``level``:

    * ``"blur"``: Gaussian blur with standard deviation ``level`` pixels;
    * ``"noise"``: added Gaussian noise of standard deviation ``level`` (the range is 2);
    * ``"colour"``: a colour cast, a random RGB offset of length ``level``, background too;
    * ``"erase"``: each shape pixel is set to black with probability ``level``;
    * ``"blobs"``: a fraction ``level`` of the images (evenly spaced) is replaced by
      rainbow-blob images;
    * ``"grey"``: colours fade towards their grey value (luminance); ``level`` 1 is greyscale.
      (A tokenizer short of codes can lose colour this way and keep every edge.)
    """
    from torchvision.transforms.functional import gaussian_blur

    check_images(images)
    if kind not in DAMAGES:
        raise ValueError(f"unknown damage {kind!r}: expected one of {DAMAGES}")
    top = 1.0 if kind in ("erase", "blobs", "grey") else float("inf")
    if not 0 <= level <= top:
        raise ValueError(f"damage level for {kind!r} must be between 0 and {top}, got {level}")
    if level == 0:
        return images.clone()
    g = torch.Generator().manual_seed(seed)
    x = images.detach().cpu()
    n = len(x)
    if kind == "blur":
        k = 2 * int(np.ceil(3 * level)) + 1
        out = gaussian_blur(x, [k, k], [float(level), float(level)])
    elif kind == "noise":
        out = x + level * torch.randn(x.shape, generator=g)
    elif kind == "colour":
        direction = F.normalize(torch.randn(n, 3, 1, 1, generator=g), dim=1)
        out = x + level * direction
    elif kind == "erase":
        shape_pixels = (x > -1).any(1, keepdim=True)
        knocked = torch.rand(n, 1, *x.shape[-2:], generator=g) < level
        out = torch.where(shape_pixels & knocked, torch.full_like(x, -1.0), x)
    elif kind == "grey":
        luma = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]).expand_as(x)
        out = torch.lerp(x, luma, level)
    else:
        out = x.clone()
        # Evenly spaced, so that any run of images shows the fraction (0.25: every 4th one).
        m = int(round(level * n))
        replace = (torch.arange(m) * n) // max(m, 1)
        out[replace] = blob_images(len(replace), x.shape[-1], g)[..., :x.shape[-2], :]
    return out.clamp(-1, 1).to(images.device)


# --------------------------------------------------------------------------- training
def _augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    # Quarter turns and flips map a forward-rotated shape (holes included) to another valid one.
    x = torch.rot90(x, int(torch.randint(4, (1,), generator=g)), (2, 3))
    return x.flip(3) if torch.rand(1, generator=g) < 0.5 else x


def make_batch(images: torch.Tensor, counts: torch.Tensor, g: torch.Generator):
    """One training batch from clean ``images (B, 3, S, S)`` with their shape ``counts``.

    Returns ``(x, count_target, damage_target, severity_target)``: ``count_target`` is
    -100 (ignored) for damaged images, whose count is not asked for; ``damage_target``
    indexes :data:`DAMAGE_CLASSES`; ``severity_target`` is in [0, 1]. Per image: 40%
    clean (half of them with an imperceptible change of :data:`TOLERATED`), 10% empty, 15%
    a paste of two images, 35% damaged (one of :data:`DAMAGES` at a random level of
    :data:`DAMAGE_RANGES`).
    """
    x, counts = _augment(images.clone(), g), counts.clone()
    n = len(x)
    kinds, severity = torch.zeros(n, dtype=torch.long), torch.zeros(n)
    role = torch.rand(n, generator=g)
    empty = role < 0.10
    x[empty], counts[empty] = -1.0, 0
    paste = (role >= 0.10) & (role < 0.25)
    if paste.any():
        partner = torch.randint(n, (int(paste.sum()),), generator=g)
        top = _augment(images[partner], g)
        x[paste] = torch.where((top > -1).any(1, keepdim=True), top, x[paste])
        counts[paste] = (counts[paste] + counts[partner]).clamp(max=MORE_THAN_FIVE)
    tolerated = torch.nonzero((role >= 0.25) & (role < 0.45)).flatten()
    for i in tolerated.tolist():
        kind = list(TOLERATED)[int(torch.randint(len(TOLERATED), (1,), generator=g))]
        level = TOLERATED[kind] * float(torch.rand(1, generator=g))
        x[i:i + 1] = damage(x[i:i + 1], kind, level, seed=int(torch.randint(2**31, (1,), generator=g)))
    damaged = torch.nonzero(role >= 0.65).flatten()
    for i in damaged.tolist():
        k = int(torch.randint(len(DAMAGES), (1,), generator=g))
        lo, hi = DAMAGE_RANGES[DAMAGES[k]]
        level = lo + (hi - lo) * float(torch.rand(1, generator=g))
        x[i:i + 1] = damage(x[i:i + 1], DAMAGES[k], level, seed=int(torch.randint(2**31, (1,), generator=g)))
        kinds[i], severity[i] = k + 1, level / hi
    counts[damaged] = -100
    return x, counts, kinds, severity


def _as_tensors(data) -> tuple[torch.Tensor, torch.Tensor]:
    """``ShapeImages`` -> ``(images (N, 3, S, S) in [-1, 1], counts (N,))``."""
    x = torch.from_numpy(data.images).permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)
    return x, torch.from_numpy(np.asarray(data.counts)).long()


def shape_splits(num_images: int, test_size: int = 200) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Train and test images at both sizes the course uses, split as ``ShapesDataset`` does.

    64x64: the first ``num_images`` of the normal-mode dataset (seed 0), the last
    ``test_size`` held out; 32x32: the quick-mode dataset (1,024 images, the last 200 held
    out). Keys ``train64, test64, train32, test32``.
    """
    from .data import load_shapes

    if num_images <= test_size:
        raise ValueError(f"num_images must exceed test_size = {test_size}, got {num_images}")
    out = {}
    for size, n, held in ((64, num_images, test_size), (32, 1024, 200)):
        x, c = _as_tensors(load_shapes(n, size, seed=0))
        out[f"train{size}"], out[f"test{size}"] = (x[:-held], c[:-held]), (x[-held:], c[-held:])
    return out


def _losses(net: ShapeFeatureNet, x, count_t, damage_t, severity_t) -> dict[str, torch.Tensor]:
    count, kind, severity = net.heads(x)
    return {"count": F.cross_entropy(count, count_t, ignore_index=-100),
            "damage": F.cross_entropy(kind, damage_t),
            "severity": F.binary_cross_entropy_with_logits(severity, severity_t)}


@torch.no_grad()
def evaluate(net: ShapeFeatureNet, splits, seed: int = 1) -> dict[str, float]:
    """The network's own accuracies on the held-out test images (both sizes): on the clean
    test images, and on a batch made of them by :func:`make_batch` (damaged, empty, pasted)."""
    net.eval()
    g = torch.Generator().manual_seed(seed)
    metrics = {}
    for size in (64, 32):
        x, counts = splits[f"test{size}"]
        count, kind, _ = net.heads(x)
        metrics[f"count_accuracy_{size}px"] = float((count.argmax(1) == counts).float().mean())
        metrics[f"judged_clean_{size}px"] = float((kind.argmax(1) == 0).float().mean())
        xb, cb, kb, sb = make_batch(x, counts, g)
        count, kind, severity = net.heads(xb)
        keep = cb >= 0
        metrics[f"mixed_count_accuracy_{size}px"] = float((count.argmax(1)[keep] == cb[keep]).float().mean())
        metrics[f"mixed_damage_kind_accuracy_{size}px"] = float((kind.argmax(1) == kb).float().mean())
        metrics[f"mixed_clean_vs_damaged_accuracy_{size}px"] = float(((kind.argmax(1) == 0) == (kb == 0)).float().mean())
        metrics[f"mixed_severity_mean_abs_error_{size}px"] = float((torch.sigmoid(severity) - sb).abs().mean())
    return metrics


def train_shape_features(steps: int = 2000, batch_size: int = 64, num_images: int = 20_000,
                         lr: float = 2e-3, width: int = 16, num_features: int = 64, seed: int = 0,
                         log_every: int = 100, progress: bool = True):
    """Train a :class:`ShapeFeatureNet` on the CPU. Returns ``(net, history, metrics)``.

    Each step takes ``batch_size`` training images of 64x64 and half as many of
    32x32 (upsampled inside the net), made into batches by :func:`make_batch`; the loss is
    the sum of the count and damage cross-entropies and the severity binary cross-entropy.
    AdamW with a one-cycle schedule. ``metrics`` holds the held-out accuracies (:func:`evaluate`).
    """
    from tqdm.auto import tqdm

    if steps < 3 or batch_size < 1:
        raise ValueError(f"expected at least 3 steps and a batch size of at least 1, got {steps} steps "
                         f"and batch size {batch_size}")
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    splits = shape_splits(num_images)
    # channels_last makes the convolutions about 1.5x faster on a CPU; the saved weights
    # are the same either way.
    net = ShapeFeatureNet(width, num_features).to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    # A warm-up of 10% of the steps, but never shorter than 2 steps (OneCycleLR divides by
    # the warm-up length minus one).
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=max(0.1, 2 / steps))
    history: dict[str, list] = {}
    start = time.perf_counter()
    net.train()
    # Half as many 32x32 images as 64x64 ones: enough that the quick-mode size is judged as
    # reliably as the normal one (with a quarter, real 32x32 images fell to 92% valid).
    small = max(2, batch_size // 2)
    for step in tqdm(range(1, steps + 1), disable=not progress, desc="shape features", unit="step"):
        parts = {}
        for size, b in ((64, batch_size), (32, small)):
            x, c = splits[f"train{size}"]
            pick = torch.randint(len(x), (b,), generator=g)
            xb, *targets = make_batch(x[pick], c[pick], g)
            for key, value in _losses(net, xb.contiguous(memory_format=torch.channels_last), *targets).items():
                parts[key] = parts.get(key, 0.0) + value * b / (batch_size + small)
        loss = sum(parts.values())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % log_every == 0 or step == steps:
            for key, value in {"loss": loss, **parts}.items():
                history.setdefault(f"train/{key}", []).append((step, value.item()))
    seconds = time.perf_counter() - start
    net = net.to(memory_format=torch.contiguous_format)
    set_feature_statistics(net, [splits["train64"][0][:2000], splits["train32"][0][:500]])
    metrics = evaluate(net, splits)
    metrics.update(train_seconds=seconds, steps=steps, batch_size=batch_size, num_images=num_images,
                   parameters=sum(p.numel() for p in net.parameters()))
    return net.eval(), history, metrics


@torch.no_grad()
def set_feature_statistics(net: ShapeFeatureNet, image_sets: list[torch.Tensor], batch_size: int = 250) -> None:
    """Store the mean and standard deviation of the raw features of clean images
    (``image_sets``: tensors ``(N, 3, H, W)``, one per image size)."""
    net.eval()
    raw = torch.cat([net._raw(b) for images in image_sets for b in images.split(batch_size)])
    net.feature_mean.copy_(raw.mean(0))
    net.feature_std.copy_(raw.std(0).clamp_min(1e-6))
