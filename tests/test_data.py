import os
import pickle
import urllib.error
import urllib.request

import numpy as np
import pytest
import torch
from PIL import Image

from dlstudio_lite import data
from dlstudio_lite.data import (DatasetUnavailableError, ShapesDataset, denormalize, draw_shape,
                                generate_shapes, load_dataset, load_shapes, shape_colour_bits)


# ----------------------------------------------------------------------------- generator
def test_generator_is_deterministic_and_prefix_stable():
    a = generate_shapes(12, 32, seed=3)
    b = generate_shapes(12, 32, seed=3)
    assert np.array_equal(a.images, b.images) and np.array_equal(a.holes, b.holes)
    assert np.array_equal(a.counts, b.counts)
    # image i depends only on (seed, i): a smaller set is a prefix of a larger one
    c = generate_shapes(5, 32, seed=3)
    assert np.array_equal(c.images, a.images[:5])
    d = generate_shapes(12, 32, seed=4)
    assert not np.array_equal(d.images, a.images)


def test_generator_shapes_dtypes_and_counts():
    out = generate_shapes(200, 32, seed=0)
    assert out.images.shape == (200, 32, 32, 3) and out.images.dtype == np.uint8
    assert out.holes.shape == (200, 32, 32) and out.holes.dtype == bool
    assert out.counts.min() >= 1 and out.counts.max() <= 5
    assert set(out.counts.tolist()) == {1, 2, 3, 4, 5}      # every count occurs
    painted = out.images.any(axis=3)
    assert painted.any(axis=(1, 2)).all()                  # no empty image
    # more shapes cover more pixels on average
    area = painted.sum(axis=(1, 2))
    assert area[out.counts == 5].mean() > 2 * area[out.counts == 1].mean()


def test_holes_appear_inside_shapes_and_only_with_rotation():
    size = 48
    for kind in data.SHAPE_NAMES:
        upright_img = np.zeros((size, size, 3), np.uint8)
        upright_holes = np.zeros((size, size), bool)
        draw_shape(upright_img, upright_holes, kind, 12, 8, 24, 24, 0.0, (255, 0, 0))
        assert not upright_holes.any(), f"{kind}: an unrotated shape must have no holes"
        img = np.zeros((size, size, 3), np.uint8)
        holes = np.zeros((size, size), bool)
        draw_shape(img, holes, kind, 12, 8, 24, 24, 0.6, (255, 0, 0))
        assert holes.any(), f"{kind}: a rotated shape must get holes"
        assert not img[holes].any(), "hole pixels are left unpainted (background shows through)"
        # holes are small and sit inside the shape: most of their neighbours are painted
        ys, xs = np.nonzero(holes)
        painted = img.any(axis=2)
        neighbours = painted[ys - 1, xs] & painted[ys + 1, xs] | painted[ys, xs - 1] & painted[ys, xs + 1]
        assert neighbours.mean() > 0.8
        assert holes.sum() < 0.2 * painted.sum()


def test_most_generated_images_have_holes():
    out = generate_shapes(100, 64, seed=1)
    assert (out.holes.sum(axis=(1, 2)) > 0).mean() > 0.8
    assert not out.images[out.holes].any(axis=1).all()     # some holes show the black background


def test_shape_colour_bits_follow_the_generator():
    """The entropy of a shape's colour: the classes by number of bright channels (>= 170)
    occur as often in generated images as the formula says, and the entropy is that of the
    class plus a uniform choice within it (every colour of a class is equally likely)."""
    from math import comb, log2
    images = data.generate_shapes(1500, 32, seed=5).images
    colours = []
    for img in images:   # each flat colour of at least 4 pixels is one shape's
        found, counts = np.unique(img.reshape(-1, 3), axis=0, return_counts=True)
        colours += [c for c, n in zip(found, counts) if c.max() > 0 and n >= 4]
    bright = (np.array(colours) >= 170).sum(1)
    size = {m: comb(3, m) * 86 ** m * 130 ** (3 - m) for m in (1, 2, 3)}    # colours per class
    share = {m: size[m] * (m / 3) / (86 * 216 ** 2) for m in (1, 2, 3)}
    assert sum(share.values()) == pytest.approx(1.0)
    assert len(colours) > 4000 and not (bright == 0).any()
    for m in (1, 2, 3):
        assert (bright == m).mean() == pytest.approx(share[m], abs=0.03), m
    within = sum(share[m] * (log2(size[m]) - log2(share[m])) for m in (1, 2, 3))
    assert shape_colour_bits() == pytest.approx(within) and 22.7 < shape_colour_bits() < 22.9


def test_generator_rejects_bad_arguments():
    with pytest.raises(ValueError, match="image_size must be at least 8"):
        generate_shapes(2, 4)
    with pytest.raises(ValueError, match="num_images must be positive"):
        generate_shapes(0)
    with pytest.raises(ValueError, match="unknown shape 'hexagon'"):
        draw_shape(np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), bool), "hexagon", 2, 2, 4, 4, 0, (1, 1, 1))


def test_cache_round_trip(tmp_path):
    first = load_shapes(20, 16, seed=2, root=tmp_path)
    files = list((tmp_path / "cache").glob("*.npz"))
    assert len(files) == 1
    data._IN_MEMORY.clear()                            # read the file this time
    again = load_shapes(20, 16, seed=2, root=tmp_path)
    assert again is not first
    assert np.array_equal(first.images, again.images) and np.array_equal(first.holes, again.holes)
    files[0].write_bytes(b"not a zip file")           # a damaged cache is regenerated
    data._IN_MEMORY.clear()
    assert np.array_equal(load_shapes(20, 16, seed=2, root=tmp_path).images, first.images)


def test_a_test_split_alone_is_drawn_without_the_rest_and_equals_the_tail(tmp_path):
    whole = generate_shapes(40, 16, seed=2)
    part = generate_shapes(8, 16, seed=2, start=32)
    assert np.array_equal(part.images, whole.images[32:]) and np.array_equal(part.counts, whole.counts[32:])
    assert np.array_equal(part.holes, whole.holes[32:])
    data._IN_MEMORY.clear()
    test = ShapesDataset("test", 16, 40, seed=2, test_size=8, root=tmp_path)
    assert [p.name for p in (tmp_path / "cache").iterdir()] == ["shapes_16px_8_seed2_from32.npz"]
    assert np.array_equal(test.images, whole.images[32:])
    train = ShapesDataset("train", 16, 40, seed=2, test_size=8, root=tmp_path)   # now the whole set
    assert np.array_equal(train.images, whole.images[:32]) and len(list((tmp_path / "cache").iterdir())) == 2
    with pytest.raises(ValueError, match="start must be at least 0"):
        generate_shapes(2, 16, start=-1)


def test_splits_share_one_copy_and_items_do_not_pin_it(tmp_path):
    train = ShapesDataset("train", 16, 40, test_size=8, root=tmp_path, return_holes=True)
    test = ShapesDataset("test", 16, 40, test_size=8, root=tmp_path, return_holes=True)
    assert train.images.base is test.images.base         # loaded once for both splits
    _, holes = test[0]
    assert not np.shares_memory(holes.numpy(), test.holes)  # an item is not a view of all masks


def test_dataset_range_split_and_items(tmp_path):
    train = ShapesDataset("train", image_size=16, num_images=60, test_size=10, root=tmp_path)
    test = ShapesDataset("test", image_size=16, num_images=60, test_size=10, root=tmp_path)
    assert len(train) == 50 and len(test) == 10
    x, count = train[0]
    assert x.shape == (3, 16, 16) and x.dtype == torch.float32 and 1 <= count <= 5
    batch = train.tensors()
    assert batch.min() >= -1.0 and batch.max() <= 1.0
    assert batch.min() == -1.0 and batch.max() > 0.5
    # the split is fixed: test images are the last ones, never in train
    full = load_shapes(60, 16, root=tmp_path)
    assert torch.equal(test.tensors(), torch.from_numpy(full.images[50:]).permute(0, 3, 1, 2).float() / 127.5 - 1)
    x, holes = ShapesDataset("train", 16, 60, test_size=10, root=tmp_path, return_holes=True)[3]
    assert holes.shape == (16, 16) and holes.dtype == torch.bool
    assert torch.allclose(denormalize(x), torch.from_numpy(full.images[3]).permute(2, 0, 1) / 255.0)


def test_dataset_defaults_ignore_quick_mode_whose_recipes_the_entry_points_apply(tmp_path,
                                                                                monkeypatch):
    from dlstudio_lite.recipes import recipe
    calls = []
    tiny = generate_shapes(300, 8)

    def fake_load(n, size, seed, root, cache, start=0):
        calls.append((start + n, size))       # the size of the dataset the images come from
        return tiny
    monkeypatch.setattr(data, "load_shapes", fake_load)
    monkeypatch.setenv("DLSTUDIO_LITE_QUICK", "1")
    ShapesDataset(root=tmp_path)
    assert recipe("vqvae_shapes").quick
    data.DataConfig(**recipe("vqvae_shapes").data, data_root=str(tmp_path)).splits()
    monkeypatch.delenv("DLSTUDIO_LITE_QUICK")
    ShapesDataset(root=tmp_path)
    assert not recipe("vqvae_shapes").quick
    assert calls == [(20_000, 64), (1024, 32), (1024, 32), (20_000, 64)]


def test_dataset_rejects_bad_split(tmp_path):
    with pytest.raises(ValueError, match="split must be 'train' or 'test', got 'val'"):
        ShapesDataset("val", 16, 30, test_size=5, root=tmp_path)
    with pytest.raises(ValueError, match="test_size"):
        ShapesDataset("train", 16, 30, test_size=30, root=tmp_path)


def test_export_image_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "DATA_ROOT", tmp_path / "root")
    out = data.export_image_folder(tmp_path / "pngs", num_images=12, image_size=16, test_size=2)
    assert len(list((out / "train" / "shapes").glob("*.png"))) == 10
    assert len(list((out / "test" / "shapes").glob("*.png"))) == 2
    ds = load_dataset(f"folder:{out / 'train'}", image_size=16)
    x, label = ds[0]
    assert x.shape == (3, 16, 16) and label == 0


# ----------------------------------------------------------------------------- real loaders
def _write_idx(path, array, magic):
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def test_mnist_loader_reads_the_idx_format(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 5), ("t10k", 3)):
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)), 2051)
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", np.arange(n), 2049)
    train = load_dataset("mnist", "train", image_size=32, root=tmp_path, download=False)
    test = load_dataset("mnist", "test", image_size=32, root=tmp_path, download=False)
    assert len(train) == 5 and len(test) == 3
    x, y = train[1]
    assert x.shape == (1, 32, 32) and y == 1
    assert -1.0 <= x.min() and x.max() <= 1.0 and x.min() < -0.5


def _no_md5(monkeypatch, module):
    # The tiny files cannot match torchvision's published checksums; existence is what we test.
    monkeypatch.setattr(module, "check_integrity", lambda path, md5=None: os.path.isfile(path))


def test_cifar10_loader_reads_the_pickle_format(tmp_path, monkeypatch):
    import torchvision.datasets.cifar as cifar
    _no_md5(monkeypatch, cifar)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        batch = {"data": rng.integers(0, 256, (2, 3072), dtype=np.uint8), "labels": [3, 7]}
        (folder / name).write_bytes(pickle.dumps(batch))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": [f"c{i}" for i in range(10)]}))
    train = load_dataset("cifar10", "train", image_size=16, root=tmp_path, download=False)
    test = load_dataset("cifar10", "test", image_size=16, root=tmp_path, download=False)
    assert len(train) == 10 and len(test) == 2
    x, y = test[1]
    assert x.shape == (3, 16, 16) and y == 7 and x.min() >= -1 and x.max() <= 1


def test_celeba_loader_reads_the_folder_format(tmp_path, monkeypatch):
    import torchvision.datasets.celeba as celeba
    _no_md5(monkeypatch, celeba)
    base = tmp_path / "celeba"
    (base / "img_align_celeba").mkdir(parents=True)
    files = [f"{i:06d}.jpg" for i in range(1, 5)]
    for f in files:
        Image.fromarray(np.full((218, 178, 3), 120, np.uint8)).save(base / "img_align_celeba" / f)
    split = {files[0]: 0, files[1]: 0, files[2]: 2, files[3]: 2}
    (base / "list_eval_partition.txt").write_text("".join(f"{f} {s}\n" for f, s in split.items()))
    (base / "identity_CelebA.txt").write_text("".join(f"{f} 1\n" for f in files))
    (base / "list_attr_celeba.txt").write_text("4\nSmiling Young\n" + "".join(f"{f} 1 -1\n" for f in files))
    (base / "list_bbox_celeba.txt").write_text("4\nimage_id x_1 y_1 width height\n"
                                               + "".join(f"{f} 1 2 3 4\n" for f in files))
    (base / "list_landmarks_align_celeba.txt").write_text(
        "4\nlefteye_x lefteye_y\n" + "".join(f"{f} 1 2\n" for f in files))
    for name in ("img_align_celeba.zip",):
        (base / name).write_bytes(b"")
    test = load_dataset("celeba", "test", image_size=32, root=tmp_path, download=False)
    assert len(test) == 2
    x, attrs = test[0]
    assert x.shape == (3, 32, 32)
    assert abs(float(x.mean()) - (120 / 255 - 0.5) / 0.5) < 0.01   # Normalize(0.5, 0.5)
    assert attrs.tolist() == [1, 0]


@pytest.mark.parametrize("name", ["mnist", "cifar10", "celeba"])
def test_missing_dataset_names_the_offline_alternative(tmp_path, name):
    with pytest.raises(DatasetUnavailableError, match="shapes") as info:
        load_dataset(name, root=tmp_path, download=False)
    assert str(tmp_path) in str(info.value)


def test_failed_download_names_the_offline_alternative(tmp_path, monkeypatch):
    # Simulate having no internet without touching the network.
    def offline(*args, **kwargs):
        raise urllib.error.URLError("Temporary failure in name resolution")
    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(DatasetUnavailableError, match="could not be downloaded.*shapes"):
        load_dataset("mnist", root=tmp_path, download=True)


def test_bad_names_and_paths(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset 'imagenet'"):
        load_dataset("imagenet", root=tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist.*shapes"):
        load_dataset(f"folder:{tmp_path / 'nope'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no images found"):
        load_dataset(f"folder:{tmp_path / 'empty'}")


def test_shapes_through_load_dataset(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "DATA_ROOT", tmp_path)
    ds = load_dataset("shapes", "test", image_size=16, root=tmp_path, num_images=300)
    assert len(ds) == 60 and ds[0][0].shape == (3, 16, 16)  # a fifth held out
    assert len(load_dataset("shapes", "test", image_size=16, root=tmp_path, num_images=2000)) == 200
    with pytest.raises(ValueError, match="shapes dataset only"):
        load_dataset("mnist", root=tmp_path, num_images=10)


def test_fresh_images_come_after_every_recipes_data_and_from_the_same_generator():
    from dlstudio_lite.data import FRESH_START, fresh_shapes
    from dlstudio_lite.recipes import RECIPES

    # no recipe trains or tests on generator indices at or past FRESH_START
    assert max(r.data_config().num_images or 20_000 for r in RECIPES.values()) < FRESH_START
    images, holes = fresh_shapes(3, image_size=32)
    assert images.shape == (3, 3, 32, 32) and holes.shape == (3, 32, 32) and holes.dtype == torch.bool
    assert images.min() >= -1 and images.max() <= 1
    same = generate_shapes(3, 32, start=FRESH_START)
    assert torch.equal(holes, torch.from_numpy(same.holes))
    assert torch.equal(((images + 1) * 127.5).round().to(torch.uint8), torch.from_numpy(same.images).permute(0, 3, 1, 2))
    assert not torch.equal(images, fresh_shapes(3, image_size=32, seed=1)[0])
