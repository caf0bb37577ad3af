"""The offline real datasets: scikit-learn's digits and scikit-image's photograph patches."""
import importlib.util
import sys

import pytest
import torch

from dlstudio_lite import DatasetUnavailableError, load_dataset
from dlstudio_lite.realdata import ALL_PHOTOS, DIGITS_TEST, PHOTOS

needs = {name: pytest.mark.skipif(importlib.util.find_spec(module) is None,
                                  reason=f"{package} is not installed (the extra 'realdata': "
                                         f"pip install -e .[realdata], or python3 course.py setup)")
         for name, module, package in [("digits", "sklearn", "scikit-learn"),
                                       ("patches", "skimage", "scikit-image")]}


def images(dataset):
    return torch.stack([dataset[i][0] for i in range(len(dataset))])


@needs["digits"]
@pytest.mark.parametrize("size", [32, 64])
def test_digits_are_three_channel_images_in_the_course_range(size):
    train, test = (load_dataset("digits", split, image_size=size) for split in ("train", "test"))
    assert (len(train), len(test)) == (1797 - DIGITS_TEST, DIGITS_TEST)
    x = images(test)
    assert x.shape == (DIGITS_TEST, 3, size, size)
    assert x.min() == -1.0 and x.max() <= 1.0 and x.max() > 0.9
    assert torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 0], x[:, 2])  # grey
    # the one-pixel margin stays black: the border rows and columns are the background
    assert x[:, :, 0, :].max() < -0.9 and x[:, :, :, -1].max() < -0.9
    labels = torch.tensor([test[i][1] for i in range(len(test))])
    assert set(labels.tolist()) == set(range(10))


@needs["digits"]
def test_digits_split_is_fixed_and_disjoint():
    from sklearn.datasets import load_digits

    raw = torch.from_numpy(load_digits().images).float()
    train, test = (load_dataset("digits", split, image_size=8 + 2) for split in ("train", "test"))
    # at 10x10 (8x8 + margin) no resampling happens: the split is the raw data, cut at the end
    assert torch.allclose(images(test)[:, 0, 1:-1, 1:-1], raw[-DIGITS_TEST:] / 8 - 1)
    assert torch.allclose(images(train)[:, 0, 1:-1, 1:-1], raw[:-DIGITS_TEST] / 8 - 1)


@needs["patches"]
@pytest.mark.parametrize("size", [32, 16])
def test_patches_are_colour_images_in_the_course_range(size):
    test = load_dataset("patches", "test", image_size=size)
    x = images(test)
    assert x.shape == (len(test), 3, size, size) and len(test) > 1000
    assert x.min() >= -1.0 and x.max() <= 1.0 and x.min() < -0.9 and x.max() > 0.9
    assert (x[:, 0] - x[:, 1]).abs().mean() > 0.02  # colour, not grey


@needs["patches"]
def test_patches_split_by_source_photograph():
    import skimage.data

    train, test = (load_dataset("patches", split, image_size=32) for split in ("train", "test"))
    sources = {split: {ALL_PHOTOS[int(ds[i][1])] for i in range(len(ds))}
               for split, ds in (("train", train), ("test", test))}
    assert sources["train"] == set(PHOTOS["train"]) and sources["test"] == set(PHOTOS["test"])
    assert not sources["train"] & sources["test"]
    assert len(train) > 3000
    # each test patch is a tile of its own photograph, unchanged at 32x32
    cat = torch.from_numpy(skimage.data.chelsea()).permute(2, 0, 1).float() / 127.5 - 1
    first = test[0]
    assert ALL_PHOTOS[int(first[1])] == "chelsea"
    assert torch.allclose(first[0], cat[:, :32, :32], atol=1e-6)
    tile = cat[:, 16:48, 32:64]  # stride 16: row 1, column 2 of the tiles
    assert any(torch.allclose(test[i][0], tile, atol=1e-6) for i in range(len(test)))


@pytest.mark.parametrize("name, module, package", [("digits", "sklearn.datasets", "scikit-learn"),
                                                   ("patches", "skimage.data", "scikit-image")])
def test_a_missing_package_names_the_extra(monkeypatch, name, module, package):
    import dlstudio_lite.realdata as realdata

    realdata._photo_tiles.cache_clear()
    monkeypatch.setitem(sys.modules, module, None)  # import of it now raises ImportError
    with pytest.raises(DatasetUnavailableError, match=rf"{package}.*\[realdata\]"):
        load_dataset(name, "train")
    realdata._photo_tiles.cache_clear()
