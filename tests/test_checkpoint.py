"""Checkpoints: atomic writes, safe loading, clear errors for corrupt or foreign files."""
import random

import numpy as np
import pytest
import torch

from dlstudio_lite import checkpoint as ckpt_mod
from dlstudio_lite.checkpoint import (FORMAT, CheckpointError, load_checkpoint, rng_state,
                                      save_checkpoint, set_rng_state)
from dlstudio_lite.checkpoint import load_model


class Arbitrary:
    """A pickled instance could run code on load: weights_only must refuse it."""


def valid_state(**extra):
    state = {"model_name": "autoencoder", "hparams": {"image_size": 16},
             "model": {"w": torch.arange(6.0)}, "optimizers": [], "schedulers": [], "step": 3,
             "epoch": 0, "history": {"train/loss": [(1, 0.5)]}, "rng": rng_state(),
             "config": {"lr": 1e-4}}
    return {**state, **extra}


def test_round_trip_with_weights_only(tmp_path):
    path = save_checkpoint(valid_state(), tmp_path / "sub" / "ck.pt")
    state = load_checkpoint(path)
    assert state["format"] == FORMAT and state["step"] == 3
    assert torch.equal(state["model"]["w"], torch.arange(6.0))
    assert state["history"]["train/loss"] == [(1, 0.5)]
    torch.load(path, weights_only=True)  # the plain safe loader accepts it too


def test_save_is_atomic_a_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = save_checkpoint(valid_state(step=1), tmp_path / "ck.pt")

    def crash(obj, f, *args, **kwargs):
        f.write(b"half a file")
        raise KeyboardInterrupt  # e.g. Ctrl-C in the middle of the write

    monkeypatch.setattr(ckpt_mod.torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(valid_state(step=2), path)
    assert load_checkpoint(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]  # no temporary file left


def test_rng_state_round_trip_restores_every_generator():
    state = rng_state()
    before = (random.random(), np.random.rand(), torch.rand(3))
    set_rng_state(state)
    after = (random.random(), np.random.rand(), torch.rand(3))
    assert before[0] == after[0] and before[1] == after[1] and torch.equal(before[2], after[2])


@pytest.mark.parametrize("content,reason", [
    (b"", "could not be read"),
    (b"\x00garbage" * 10, "could not be read"),
    ("truncated", "could not be read"),
    ("foreign_dict", "not a dlstudio-lite checkpoint"),
    ("foreign_tensor", "not a dlstudio-lite checkpoint"),
    ("unsafe_pickle", "Unsupported global"),
    ("missing_keys", "missing key(s) history, rng"),
])
def test_corrupt_or_foreign_files_give_a_clear_error(tmp_path, content, reason):
    path = tmp_path / "bad.pt"
    if content == "truncated":
        save_checkpoint(valid_state(), path)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif content == "foreign_dict":  # e.g. a bare state_dict from another project
        torch.save({"state_dict": {"w": torch.ones(2)}, "epoch": 3}, path)
    elif content == "foreign_tensor":
        torch.save(torch.ones(2), path)
    elif content == "unsafe_pickle":  # arbitrary objects: weights_only refuses to unpickle
        torch.save({"format": FORMAT, **valid_state(), "extra": Arbitrary()}, path)
    elif content == "missing_keys":
        state = valid_state()
        del state["history"], state["rng"]
        torch.save({"format": FORMAT, **state}, path)
    else:
        path.write_bytes(content)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert str(path) in str(info.value) and reason in str(info.value)


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(CheckpointError, match="nope.pt.*does not exist"):
        load_checkpoint(tmp_path / "nope.pt")


def test_load_model_reports_weights_that_do_not_fit(tmp_path):
    path = save_checkpoint(valid_state(hparams={"image_size": 16, "latent_size": 4,
                                                "base_channels": 8}), tmp_path / "ck.pt")
    with pytest.raises(CheckpointError, match="does not fit the model Autoencoder"):
        load_model(path)
    path = save_checkpoint(valid_state(model_name="gpt5"), tmp_path / "ck2.pt")
    with pytest.raises(CheckpointError, match="unknown model 'gpt5'"):
        load_model(path)


def test_non_dict_state_is_refused(tmp_path):
    with pytest.raises(ValueError, match="dict"):
        save_checkpoint([1, 2], tmp_path / "x.pt")


@pytest.mark.parametrize("folder", ["autoencoder_shapes", "vae_shapes", "vqvae_shapes", "vqvae16_shapes",
                                    "vqgan_shapes", "vqgan_nodisc_shapes", "prior_shapes",
                                    "vqgan_mixture_shapes", "vqgan_mixture_nodisc_shapes",
                                    "prior_mixture_shapes", "vqgan_mixture_long_nodisc_shapes",
                                    "prior_mixture_long_shapes", "vae_beta_sweep/beta_0.01"])
def test_every_shipped_checkpoint_loads_and_holds_trained_weights(folder):
    from dlstudio_lite.checkpoint import MODELS
    from dlstudio_lite.data import generate_shapes
    from dlstudio_lite.paths import CHECKPOINTS
    path = CHECKPOINTS / folder / "checkpoint.pt"
    name = load_checkpoint(path)["model_name"]
    model = load_model(path)
    ckpt = load_checkpoint(path)
    assert type(model) is MODELS[name] and not model.training
    assert type(MODELS[name](**ckpt["hparams"])) is type(model)  # old hparams were upgraded
    torch.manual_seed(0)
    fresh = MODELS[name](**ckpt["hparams"]).eval()
    if name == "prior":
        codes = torch.randint(0, model.num_codes, (2, *model.latent_shape))
        assert torch.isfinite(model.compute_loss(codes)[0])
        return
    shapes = generate_shapes(4, model.hparams["image_size"], seed=123)
    x = torch.from_numpy(shapes.images).permute(0, 3, 1, 2).float() / 127.5 - 1
    with torch.no_grad():
        err = (model.reconstruct(x) - x).pow(2).mean()
        untrained = (fresh.reconstruct(x) - x).pow(2).mean()
    assert err < 0.5 * untrained  # the trained weights, not a random initialisation


@pytest.mark.parametrize("vq_name,prior_name", [("vqgan_shapes", "prior_shapes"),
                                                 ("vqgan_mixture_nodisc_shapes", "prior_mixture_shapes"),
                                                 ("vqgan_mixture_long_nodisc_shapes", "prior_mixture_long_shapes")])
def test_the_shipped_prior_was_trained_on_the_codes_of_the_shipped_vqgan(vq_name, prior_name):
    # Lecture 6 samples each prior through its VQGAN: retraining one without the other
    # would leave a prior that writes another model's codes (or cannot be decoded at all).
    import math
    from dlstudio_lite.data import ShapesDataset
    from dlstudio_lite.paths import CHECKPOINTS
    from dlstudio_lite.recipes import recipe
    assert recipe(prior_name).codes_of == vq_name
    vqgan = load_model(CHECKPOINTS / vq_name / "checkpoint.pt")
    prior = load_model(CHECKPOINTS / prior_name / "checkpoint.pt")
    assert prior.num_codes == vqgan.num_codes
    with torch.no_grad():
        codes = vqgan.encode_to_indices(ShapesDataset("test", image_size=64).tensors(32))
        assert tuple(prior.latent_shape) == tuple(codes.shape[1:])
        bits = float(prior.compute_loss(codes)[1]["bits_per_code"])
    # A prior for other codes would do worse than uniform guessing; this one is far better.
    assert bits < 0.6 * math.log2(prior.num_codes)


@pytest.mark.parametrize("kind", ["vae", "vqvae"])
def test_the_appendix_pair_loads_and_holds_trained_weights_on_the_same_grid(kind):
    from dlstudio_lite.checkpoint import MODELS
    from dlstudio_lite.data import generate_shapes
    from dlstudio_lite.paths import CHECKPOINTS
    path = CHECKPOINTS / "crossdata_shapes" / kind / "checkpoint.pt"
    model = load_model(path)
    assert type(model) is MODELS[kind] and model.hparams["latent_size"] == 8   # lecture 07's 8x8 grid
    torch.manual_seed(0)
    fresh = MODELS[kind](**load_checkpoint(path)["hparams"]).eval()
    x = torch.from_numpy(generate_shapes(4, 32, seed=123).images).permute(0, 3, 1, 2).float() / 127.5 - 1
    with torch.no_grad():
        assert (model.reconstruct(x) - x).pow(2).mean() < 0.5 * (fresh.reconstruct(x) - x).pow(2).mean()


def test_every_shipped_checkpoint_is_documented_with_its_metrics():
    """Each checkpoint.pt under data/checkpoints has a metrics.json beside it and a row (its
    folder, or its sweep's pattern) in data/checkpoints/README.md, which gives its command."""
    from dlstudio_lite.paths import CHECKPOINTS
    readme = (CHECKPOINTS / "README.md").read_text()
    for path in sorted(CHECKPOINTS.rglob("checkpoint.pt")):
        folder = path.parent.relative_to(CHECKPOINTS).as_posix()
        assert (path.parent / "metrics.json").exists(), folder
        top = folder.split("/")[0]
        assert f"| {folder} |" in readme or f"| {top}/" in readme or f"| {top} |" in readme, folder


def test_the_shipped_checkpoints_stay_under_60_mb():
    """Everything under data/checkpoints is shipped with the course (the dataset caches live
    in data/cache/, which git ignores); the whole folder must stay under 60 MB (issue 25's
    budget, for a clone that stays quick on a student's connection)."""
    from dlstudio_lite.paths import CHECKPOINTS
    total = sum(p.stat().st_size for p in CHECKPOINTS.rglob("*") if p.is_file())
    assert total < 60e6, f"data/checkpoints holds {total / 1e6:.2f} MB; slim or shrink something"
