"""Datasets: the embedded shapes dataset and the real loaders.

The course cannot rely on downloads (classrooms, trains, sandboxes), so its default
dataset is generated locally: a stand-in for the lecture's PurdueShapes5GAN. Each RGB
image holds one to five shapes (rectangle, triangle, disk, oval, star) at random
positions, orientations and colours. Shapes are rotated by *forward-mapping* their
pixels and rounding, without interpolation, so some target pixels receive no source
pixel: the small holes the lecture uses to tell a VQ-VAE (keeps them) from a VAE
(blurs them away). The generator also returns where those holes are.

All datasets yield ``(image, target)`` with ``image`` a ``(C, H, W)`` float tensor in
``[-1, 1]`` (normalised with mean 0.5 and std 0.5 per channel).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .paths import DATA_ROOT, atomic_write

SHAPE_NAMES = ("rectangle", "triangle", "disk", "oval", "star")
OFFLINE_HINT = ("Without internet, use the embedded shapes dataset instead (load_dataset('shapes') "
                "in Python or --dataset shapes on the command line; it is generated on this "
                "machine), or the real 'digits' and 'patches' that ship inside scikit-learn "
                "and scikit-image (the course's set-up installs them), no download needed.")


class DatasetUnavailableError(RuntimeError):
    """A dataset is neither on disk nor downloadable."""


# --------------------------------------------------------------------------- generator
@dataclass
class ShapeImages:
    """Output of :func:`generate_shapes`.

    images: uint8 ``(N, H, W, 3)``; holes: bool ``(N, H, W)``, pixels inside an ideal
    (interpolated) shape that the forward-mapped rotation left unpainted; counts: int ``(N,)``.
    """
    images: np.ndarray
    holes: np.ndarray
    counts: np.ndarray


def _polygon(kind: str, a: float, b: float) -> np.ndarray | None:
    """Vertices ``(V, 2)`` of a shape centred at the origin before rotation (None for conics)."""
    if kind == "rectangle":
        return np.array([[-a, -b], [a, -b], [a, b], [-a, b]])
    if kind == "triangle":
        return np.array([[-a, b], [a, b], [0.0, -b]])
    if kind == "star":
        angles = -np.pi / 2 + np.arange(10) * np.pi / 5
        radii = np.where(np.arange(10) % 2 == 0, a, 0.42 * a)
        return np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)
    return None


def _inside(kind: str, a: float, b: float, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Boolean mask: which local points ``(u, v)`` lie inside the unrotated shape."""
    if kind == "disk":
        return u * u + v * v <= a * a
    if kind == "oval":
        return (u / a) ** 2 + (v / b) ** 2 <= 1.0
    poly = _polygon(kind, a, b)
    # Even-odd ray casting, vectorised over points (P) and edges (V).
    x0, y0 = poly[:, 0], poly[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    u_, v_ = u[:, None], v[:, None]
    crosses = (y0 > v_) != (y1 > v_)
    with np.errstate(divide="ignore", invalid="ignore"):
        x_at = x0 + (v_ - y0) * (x1 - x0) / (y1 - y0)
    return np.logical_xor.reduce(crosses & (u_ < x_at), axis=1)


def draw_shape(image: np.ndarray, holes: np.ndarray, kind: str, a: float, b: float,
               cx: float, cy: float, theta: float, colour) -> None:
    """Paint one shape into ``image (H, W, 3)`` in place and update the ``holes (H, W)`` mask.

    ``a``, ``b``: half-width and half-height before rotation; ``(cx, cy)``: centre in pixels;
    ``theta``: rotation in radians.
    """
    if kind not in SHAPE_NAMES:
        raise ValueError(f"unknown shape {kind!r}: expected one of {SHAPE_NAMES}")
    size_y, size_x = holes.shape
    c, s = np.cos(theta), np.sin(theta)
    # Forward mapping: every integer point of the upright shape is rotated and rounded.
    # Rounding sends some pairs of source points to the same target pixel, so other
    # target pixels get nothing: those are the holes.
    r = int(np.ceil(max(a, b))) + 1
    v, u = np.mgrid[-r:r + 1, -r:r + 1].reshape(2, -1).astype(float)
    keep = _inside(kind, a, b, u, v)
    u, v = u[keep], v[keep]
    tx = np.rint(cx + c * u - s * v).astype(int)
    ty = np.rint(cy + s * u + c * v).astype(int)
    ok = (tx >= 0) & (tx < size_x) & (ty >= 0) & (ty < size_y)
    painted = np.zeros_like(holes)
    painted[ty[ok], tx[ok]] = True

    # The ideal shape (inverse mapping, what interpolation would give), eroded by one
    # pixel so that rounding differences along the outline do not count as holes.
    ys, xs = np.mgrid[0:size_y, 0:size_x]
    lu = c * (xs - cx) + s * (ys - cy)
    lv = -s * (xs - cx) + c * (ys - cy)
    ideal = _inside(kind, a, b, lu.ravel(), lv.ravel()).reshape(size_y, size_x)
    inner = ideal.copy()
    inner[1:, :] &= ideal[:-1, :]
    inner[:-1, :] &= ideal[1:, :]
    inner[:, 1:] &= ideal[:, :-1]
    inner[:, :-1] &= ideal[:, 1:]

    image[painted] = colour
    holes[painted] = False          # a later shape covers earlier holes
    holes |= inner & ~painted


def _draw_one(rng: np.random.Generator, size: int, max_shapes: int):
    image = np.zeros((size, size, 3), np.uint8)
    holes = np.zeros((size, size), bool)
    count = int(rng.integers(1, max_shapes + 1))
    for _ in range(count):
        kind = SHAPE_NAMES[rng.integers(len(SHAPE_NAMES))]
        a = rng.uniform(0.09, 0.2) * size
        b = a if kind in ("disk", "star") else a * rng.uniform(0.45, 0.85)
        cx, cy = rng.uniform(0.15, 0.85, size=2) * size
        theta = rng.uniform(0, 2 * np.pi)
        colour = rng.integers(40, 256, size=3)
        colour[rng.integers(3)] = rng.integers(170, 256)  # keep every shape clearly visible
        draw_shape(image, holes, kind, a, b, cx, cy, theta, colour)
    return image, holes, count


def shape_colour_bits() -> float:
    """Entropy, in bits, of one shape's colour as ``_draw_one`` draws it (about 22.8).

    Each channel is drawn from the 216 levels 40..255, then one channel, chosen at random,
    is redrawn from the 86 bright levels 170..255. A colour with m channels at 170 or above
    has probability (m / 3) / (86 * 216**2), and comb(3, m) * 86**m * 130**(3 - m) colours
    have m such channels."""
    from math import comb, log2
    return -sum(comb(3, m) * 86 ** m * 130 ** (3 - m) * q * log2(q)
                for m in (1, 2, 3) for q in [m / 3 / 86 / 216 ** 2])


def generate_shapes(num_images: int, image_size: int = 64, seed: int = 0,
                    max_shapes: int = 5, start: int = 0) -> ShapeImages:
    """Generate images ``start`` to ``start + num_images - 1`` deterministically from ``seed``.

    Image ``i`` depends only on ``(seed, i, image_size)``, so a smaller set is a prefix of
    a larger one, and a test split (the last images) can be drawn without the rest.
    Returns :class:`ShapeImages`.
    """
    if image_size < 8:
        raise ValueError(f"image_size must be at least 8 pixels, got {image_size}")
    if num_images < 1:
        raise ValueError(f"num_images must be positive, got {num_images}")
    if not 1 <= max_shapes <= 5:
        raise ValueError(f"max_shapes must be between 1 and 5, got {max_shapes}")
    if start < 0:
        raise ValueError(f"start must be at least 0, got {start}")
    images = np.empty((num_images, image_size, image_size, 3), np.uint8)
    holes = np.empty((num_images, image_size, image_size), bool)
    counts = np.empty(num_images, np.int64)
    from tqdm.auto import tqdm

    # A bar for the first, uncached generation of a full dataset (a minute or more on a CPU).
    # Image i's generator is child i of SeedSequence(seed).spawn(...), built directly.
    indices = tqdm(range(num_images), desc="generating shapes (cached afterwards)",
                   unit="img", disable=num_images < 5_000, mininterval=2.0)
    for i in indices:
        child = np.random.SeedSequence(seed, spawn_key=(start + i,))
        images[i], holes[i], counts[i] = _draw_one(np.random.default_rng(child), image_size, max_shapes)
    return ShapeImages(images, holes, counts)


# Generator indices that no split uses (the largest, the priors' 100,000 training images, ends
# far below): images drawn from here are new to every model of the course.
FRESH_START = 1_000_000


def fresh_shapes(num_images: int, image_size: int = 64, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``num_images`` shapes images that no model trained or was tested on, a larger sample
    than the 200-image test split: ``(images (N, 3, S, S) in [-1, 1], holes (N, S, S) bool)``."""
    data = generate_shapes(num_images, image_size, seed, start=FRESH_START)
    return _unit_tensor(data.images), torch.from_numpy(data.holes)


def _unit_tensor(images: np.ndarray) -> torch.Tensor:
    """``(N, H, W, 3)`` uint8 images as one ``(N, 3, H, W)`` float tensor in [-1, 1]."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)


def _cache_path(root, num_images: int, image_size: int, seed: int, start: int = 0) -> Path:
    tail = f"_from{start}" if start else ""
    return Path(root) / "cache" / f"shapes_{image_size}px_{num_images}_seed{seed}{tail}.npz"


def load_shapes(num_images: int, image_size: int = 64, seed: int = 0,
                root: str | Path = DATA_ROOT, cache: bool = True, start: int = 0) -> ShapeImages:
    """Like :func:`generate_shapes`, but cached under ``root/cache`` after the first call,
    and kept in memory for the process: a train and a test split share one copy."""
    if not cache:
        return generate_shapes(num_images, image_size, seed, start=start)
    path = _cache_path(root, num_images, image_size, seed, start)
    key = (str(path.resolve()), num_images, image_size, seed)
    if key not in _IN_MEMORY:
        if num_images > _SMALL:  # hold one large dataset at a time: 20,000 images take ~330 MB
            for other in [k for k in _IN_MEMORY if k[1] > _SMALL]:
                del _IN_MEMORY[other]
        elif sum(k[1] <= _SMALL for k in _IN_MEMORY) >= 8:
            del _IN_MEMORY[next(k for k in _IN_MEMORY if k[1] <= _SMALL)]   # the oldest small one
        _IN_MEMORY[key] = _load_or_generate(path, num_images, image_size, seed, start)
    return _IN_MEMORY[key]


_IN_MEMORY: dict[tuple, ShapeImages] = {}
_SMALL = 2_000


def _has_cached(root, num_images: int, image_size: int, seed: int) -> bool:
    path = _cache_path(root, num_images, image_size, seed)
    return (str(path.resolve()), num_images, image_size, seed) in _IN_MEMORY or path.exists()


def _load_or_generate(path: Path, num_images: int, image_size: int, seed: int, start: int = 0) -> ShapeImages:
    if path.exists():
        try:
            with np.load(path) as f:
                holes = np.unpackbits(f["holes"], count=num_images * image_size * image_size)
                return ShapeImages(f["images"], holes.reshape(num_images, image_size, image_size).astype(bool),
                                   f["counts"])
        except (OSError, KeyError, ValueError):
            pass  # a damaged cache is simply regenerated
    data = generate_shapes(num_images, image_size, seed, start=start)
    atomic_write(path, lambda f: np.savez(f, images=data.images, holes=np.packbits(data.holes),
                                          counts=data.counts))
    return data


class ShapesDataset(Dataset):
    """The embedded shapes dataset (a PurdueShapes5GAN stand-in).

    The last ``test_size`` images form the test split, the rest the train split.
    Defaults: 20,000 images of 64x64 (quick mode caps them at 1,024 of 32x32: recipes.quick_variant).
    Item: ``(image (3, H, W) in [-1, 1], number of shapes)``, or ``(image, holes (H, W) bool)``
    with ``return_holes=True``.
    """

    def __init__(self, split: str = "train", image_size: int = 64, num_images: int = 20_000,
                 seed: int = 0, root: str | Path = DATA_ROOT, test_size: int = 200,
                 return_holes: bool = False, cache: bool = True):
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        if not 0 < test_size < num_images:
            raise ValueError(f"test_size must be between 1 and num_images - 1 = {num_images - 1}, got {test_size}")
        if split == "test" and not (cache and _has_cached(root, num_images, image_size, seed)):
            # Only the held-out tail: drawing all 20,000 images for 200 takes half a minute.
            data = load_shapes(test_size, image_size, seed, root, cache, start=num_images - test_size)
            part = slice(None)
        else:
            data = load_shapes(num_images, image_size, seed, root, cache)
            part = slice(0, num_images - test_size) if split == "train" else slice(num_images - test_size, None)
        self.images, self.holes, self.counts = data.images[part], data.holes[part], data.counts[part]
        self.split, self.image_size, self.return_holes = split, image_size, return_holes

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        image = torch.from_numpy(self.images[index]).permute(2, 0, 1).float().div_(127.5).sub_(1.0)
        if self.return_holes:
            # A copy: a view would keep the whole (N, H, W) mask alive as long as the item.
            return image, torch.from_numpy(self.holes[index].copy())
        return image, int(self.counts[index])

    def tensors(self, n: int | None = None) -> torch.Tensor:
        """The first ``n`` images (all by default) as one ``(n, 3, H, W)`` tensor in [-1, 1]."""
        return _unit_tensor(self.images[:n])


# --------------------------------------------------------------------------- real loaders
def _transform(image_size: int, crop: bool):
    from torchvision import transforms as T
    steps = [T.Resize(image_size)]
    if crop:
        steps.append(T.CenterCrop(image_size))
    # Mean 0.5 and std 0.5 map [0, 1] to [-1, 1]; other values (e.g. 0.4 / 0.4) shift and
    # stretch the range, which is how the student project got its black blotches.
    steps += [T.ToTensor(), T.Normalize(0.5, 0.5)]
    return T.Compose(steps)


def load_dataset(name: str, split: str = "train", image_size: int = 64, root: str | Path = DATA_ROOT,
                 download: bool = True, num_images: int | None = None) -> Dataset:
    """A dataset by name: ``shapes``, ``digits``, ``patches``, ``mnist``, ``cifar10``,
    ``celeba`` or ``folder:PATH``. ``digits`` and ``patches`` are real images that ship
    inside scikit-learn and scikit-image (realdata.py): offline, like the shapes.

    ``num_images`` (shapes only) generates that many images instead of 20,000 and holds out
    a fifth of them, at most 200, as the test split.

    Images come resized (and centre-cropped where needed) to ``image_size`` and normalised
    to ``[-1, 1]``; MNIST keeps its single channel. When a real dataset is missing and cannot
    be downloaded, raises :class:`DatasetUnavailableError` naming the offline alternative.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    root = Path(root)
    key = name.lower()
    if key == "shapes":
        extra = {}
        if num_images:
            extra = {"num_images": num_images, "test_size": min(200, max(1, num_images // 5))}
        return ShapesDataset(split, image_size=image_size, root=root, **extra)
    if num_images:
        raise ValueError(f"num_images applies to the shapes dataset only, not {name!r}")
    if key in ("digits", "patches"):
        from . import realdata
        return (realdata.load_digits if key == "digits" else realdata.load_patches)(split, image_size)
    import torchvision.datasets as tvd  # only here: importing it takes seconds
    if key.startswith("folder:") or key == "folder":
        path = Path(name.split(":", 1)[1] if ":" in name else root)
        if not path.is_dir():
            raise FileNotFoundError(f"image folder {str(path)!r} does not exist (expected a folder with "
                                    f"one sub-folder per class). {OFFLINE_HINT}")
        try:
            return tvd.ImageFolder(str(path), transform=_transform(image_size, crop=True))
        except FileNotFoundError as err:
            raise FileNotFoundError(f"no images found in {str(path)!r}: expected class sub-folders "
                                    f"holding .png/.jpg files ({err}). {OFFLINE_HINT}") from err
    makers = {
        "mnist": lambda: tvd.MNIST(str(root), train=split == "train", download=download,
                                   transform=_transform(image_size, crop=False)),
        "cifar10": lambda: tvd.CIFAR10(str(root), train=split == "train", download=download,
                                       transform=_transform(image_size, crop=False)),
        "celeba": lambda: tvd.CelebA(str(root), split="train" if split == "train" else "test",
                                     target_type="attr", download=download,
                                     transform=_transform(image_size, crop=True)),
    }
    if key not in makers:
        raise ValueError(f"unknown dataset {name!r}: expected one of shapes, digits, patches, mnist, "
                         f"cifar10, celeba, folder:PATH")
    try:
        return makers[key]()
    except (RuntimeError, OSError, ValueError) as err:
        how = "could not be downloaded" if download else "downloading is off (download=False)"
        detail = " ".join(str(err).split())  # torchvision's messages span several lines
        raise DatasetUnavailableError(
            f"{name} was not found under {str(root)!r} and {how} ({type(err).__name__}: {detail}). {OFFLINE_HINT}"
        ) from err


def images_of(batch) -> torch.Tensor:
    """The images of a batch: datasets yield ``(image, target)`` (or ``(codes,)``), and
    models, the trainer and the evaluation use the first element only."""
    return batch[0] if isinstance(batch, (tuple, list)) else batch


@dataclass
class DataConfig:
    """Which images a run trains on (the command line's data options)."""
    dataset: str = field(default="shapes", metadata={
        "help": "shapes, digits, patches, mnist, cifar10, celeba or folder:PATH (shapes, digits "
                "and patches need no download)"})
    data_root: str | None = field(default=None, metadata={
        "help": "where datasets live (default: data/, or $DLSTUDIO_LITE_DATA)"})
    image_size: int = field(default=64, metadata={"help": "square image side"})
    num_images: int | None = field(default=None, metadata={
        "help": "shapes only: images to generate (the last fifth, at most 200, for testing)"})

    def splits(self) -> tuple[Dataset, Dataset]:
        """``(train, test)`` datasets."""
        root = Path(self.data_root) if self.data_root else DATA_ROOT
        return tuple(load_dataset(self.dataset, split, image_size=self.image_size, root=root,
                                  num_images=self.num_images) for split in ("train", "test"))


def denormalize(x: torch.Tensor) -> torch.Tensor:
    """Map images from ``[-1, 1]`` back to ``[0, 1]`` (clamped), for display."""
    return (x * 0.5 + 0.5).clamp(0.0, 1.0)


# --------------------------------------------------------------------------- command line
def export_image_folder(out: str | Path, num_images: int = 20_000, image_size: int = 64, seed: int = 0,
                        test_size: int = 200) -> Path:
    """Write the shapes dataset as PNGs: ``out/{train,test}/shapes/NNNNN.png`` (ImageFolder layout)."""
    from PIL import Image
    from tqdm.auto import tqdm

    out = Path(out)
    data = load_shapes(num_images, image_size, seed)
    for i in tqdm(range(num_images), desc="writing PNGs", unit="img"):
        split = "test" if i >= num_images - test_size else "train"
        folder = out / split / "shapes"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(data.images[i]).save(folder / f"{i:05d}.png")
    return out
