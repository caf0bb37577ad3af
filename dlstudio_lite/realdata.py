"""Two real datasets that need no download: they ship inside scikit-learn and scikit-image.

* ``digits``: scikit-learn's 1,797 handwritten digits (8x8 grey, 17 grey levels), padded by
  one black pixel (a margin, as MNIST has) and resized bilinearly to the image size, grey
  copied to 3 channels. The last 297 images are the test split. Target: the digit.
* ``patches``: 32x32 tiles cut (stride 16) from six colour photographs of ``skimage.data``,
  resized to the image size when that is not 32. The split is by photograph, so no
  photograph gives patches to both: train astronaut, coffee, immunohistochemistry,
  motorcycle (left view); test chelsea (the cat), rocket. Two sample images are left out
  because they are mostly black (hubble_deep_field, retina), and the synthetic ones (logo,
  colorwheel). Target: the index of the source photograph in ``PHOTOS``.

Both packages are the optional extra ``realdata`` (``pip install -e .[realdata]``; the
course's set-up installs it): a missing one raises :class:`~.data.DatasetUnavailableError`
naming the extra. Images are ``(3, H, W)`` in ``[-1, 1]`` like every other dataset.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, TensorDataset

DIGITS_TEST = 297
PATCH, STRIDE = 32, 16
PHOTOS = {"train": ("astronaut", "coffee", "immunohistochemistry", "motorcycle"),
          "test": ("chelsea", "rocket")}
ALL_PHOTOS = PHOTOS["train"] + PHOTOS["test"]
EXTRA_HINT = ("it ships inside {package}, which is not installed: pip install -e '.[realdata]' "
              "in the course folder (python3 course.py setup installs it)")


def _require(module: str, package: str, dataset: str):
    import importlib

    from .data import DatasetUnavailableError
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise DatasetUnavailableError(f"the {dataset} dataset is unavailable: "
                                      + EXTRA_HINT.format(package=package)) from err


def _resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """``(N, C, h, w)`` in [0, 1] -> ``(N, C, size, size)``, bilinear (antialiased when shrinking)."""
    if images.shape[-1] == size:
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False,
                         antialias=size < images.shape[-1]).clamp_(0.0, 1.0)


def load_digits(split: str = "train", image_size: int = 32) -> Dataset:
    """scikit-learn's digits as ``(image (3, S, S) in [-1, 1], digit)`` pairs."""
    datasets = _require("sklearn.datasets", "scikit-learn", "digits")
    bunch = datasets.load_digits()
    images = torch.from_numpy(bunch.images).float().div_(16.0)[:, None]  # (1797, 1, 8, 8)
    images = F.pad(images, (1, 1, 1, 1))                                 # one-pixel black margin
    part = slice(None, -DIGITS_TEST) if split == "train" else slice(-DIGITS_TEST, None)
    x = _resize(images[part], image_size).repeat(1, 3, 1, 1).mul_(2.0).sub_(1.0)
    return TensorDataset(x, torch.from_numpy(bunch.target[part]).long())


@lru_cache(maxsize=2)
def _photo_tiles(split: str) -> tuple[np.ndarray, np.ndarray]:
    """uint8 tiles ``(N, 32, 32, 3)`` of the split's photographs and each tile's photograph."""
    data = _require("skimage.data", "scikit-image", "patches")
    tiles, sources = [], []
    for name in PHOTOS[split]:
        photo = data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(data, name)()
        h, w = photo.shape[:2]
        for top in range(0, h - PATCH + 1, STRIDE):
            for left in range(0, w - PATCH + 1, STRIDE):
                tiles.append(photo[top:top + PATCH, left:left + PATCH, :3])
        sources += [ALL_PHOTOS.index(name)] * (len(tiles) - len(sources))
    return np.stack(tiles), np.array(sources)


def load_patches(split: str = "train", image_size: int = 32) -> Dataset:
    """Colour patches of skimage's sample photographs as ``(image (3, S, S) in [-1, 1],
    source photograph)`` pairs; train and test come from different photographs."""
    tiles, sources = _photo_tiles(split)
    x = torch.from_numpy(tiles).permute(0, 3, 1, 2).float().div_(255.0)
    return TensorDataset(_resize(x, image_size).mul_(2.0).sub_(1.0), torch.from_numpy(sources))
