"""The trainer: exact resume, NaN guard, Ctrl-C, optimizers/schedulers, AMP choice, CLI."""
import json
import signal

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from dlstudio_lite import cli
from dlstudio_lite.checkpoint import CheckpointError, load_checkpoint
from dlstudio_lite.device import seed_everything
from dlstudio_lite.checkpoint import MODELS, load_model
from dlstudio_lite.notebook import load_or_train
from dlstudio_lite.recipes import recipe
from dlstudio_lite.train import (NonFiniteLossError, TrainConfig, Trainer, make_optimizer,
                                 make_scheduler)


class TinyAE(nn.Module):
    """Smallest protocol model: a conv autoencoder with dropout (so it draws random numbers)."""

    def __init__(self, channels: int = 4):
        super().__init__()
        self.hparams = {"channels": channels}
        self.enc = nn.Conv2d(3, channels, 3, padding=1)
        self.drop = nn.Dropout(0.2)
        self.dec = nn.Conv2d(channels, 3, 3, padding=1)

    def reconstruct(self, x):
        return self.dec(self.drop(torch.relu(self.enc(x))))

    def compute_loss(self, x):
        recon = F.mse_loss(self.reconstruct(x), x)
        return recon, {"recon": recon.detach()}


def images(n=20, size=8, seed=1):
    g = torch.Generator().manual_seed(seed)
    return TensorDataset(torch.rand(n, 3, size, size, generator=g) * 2 - 1)


TINY = {  # real course models, as small as they go
    "vae": dict(image_size=16, latent_size=4, base_channels=8, latent_channels=4),
    "vqvae": dict(image_size=16, latent_size=4, base_channels=8, num_codes=16, code_dim=8),
    "vqgan": dict(image_size=16, latent_size=4, base_channels=8, num_codes=16, code_dim=8,
                  disc_channels=8, disc_start=2),
}


def build(name, seed=0):
    seed_everything(seed)
    if name == "tiny":
        return TinyAE()
    return MODELS[name](**TINY[name])


def run_config(**kw):
    base = dict(steps=7, batch_size=4, lr=1e-3, log_every=1, progress=False, seed=3,
                optimizer="adamw", scheduler="CosineAnnealingLR")
    return TrainConfig(**{**base, **kw})


def interrupt_after(model, calls, how="raise"):
    """Simulate Ctrl-C so that training stops after ``calls`` steps.

    "signal": a real SIGINT in the middle of step ``calls`` (after the forward pass drew
    random numbers and updated EMA buffers): the trainer must finish that step first.
    "raise": a KeyboardInterrupt at the start of step ``calls + 1`` (what reaches the
    trainer when it cannot install its handler)."""
    name = "generator_loss" if hasattr(model, "generator_loss") else "compute_loss"
    original, count = getattr(model, name), {"n": 0}

    def wrapped(*args):
        if how == "raise" and count["n"] == calls:
            raise KeyboardInterrupt
        count["n"] += 1
        out = original(*args)
        if how == "signal" and count["n"] == calls:
            signal.raise_signal(signal.SIGINT)
        return out
    setattr(model, name, wrapped)


# --- resume ------------------------------------------------------------------------------

@pytest.mark.parametrize("name,stop,how", [
    ("tiny", 3, "raise"), ("tiny", 5, "signal"), ("vae", 2, "signal"), ("vqvae", 3, "signal"),
    ("vqvae", 2, "raise"), ("vqgan", 3, "signal")])
def test_resume_gives_the_same_losses_as_an_uninterrupted_run(tmp_path, name, stop, how):
    # 16 images / batch 4 = 4 batches per epoch: stop=5 resumes inside epoch 1 and stop=3
    # crosses an epoch boundary after resuming. Losses must match exactly on CPU, which
    # needs the RNG (dropout, VAE noise), data order, optimizer, scheduler and EMA restored.
    size = 16 if name != "tiny" else 8
    data = images(16, size)
    full = Trainer(build(name), data, config=run_config()).fit()

    model = build(name)
    interrupt_after(model, stop, how)
    first = Trainer(model, data, config=run_config(), out_dir=tmp_path)
    first.fit()
    assert first.interrupted and first.step == stop
    assert load_checkpoint(tmp_path / "checkpoint.pt")["step"] == stop

    # a differently initialised model: everything must come from the checkpoint
    resumed = Trainer(build(name, seed=99), data, config=run_config(), out_dir=tmp_path)
    resumed.resume(tmp_path / "checkpoint.pt")
    history = resumed.fit()
    assert not resumed.interrupted and resumed.step == 7
    for key in ("train/loss", "train/recon", "lr"):
        assert history[key] == full[key], key
    if name == "vqgan":
        assert history["train/d_loss"] == full["train/d_loss"]


def test_resume_refuses_a_checkpoint_of_another_model(tmp_path):
    data = images(8)
    Trainer(TinyAE(4), data, config=run_config(steps=2), out_dir=tmp_path).fit()
    other = Trainer(TinyAE(6), data, config=run_config(steps=2))
    with pytest.raises(CheckpointError, match="hparams"):
        other.resume(tmp_path / "checkpoint.pt")


def test_load_model_rebuilds_a_course_model(tmp_path):
    trainer = Trainer(build("vqvae"), images(8, 16), config=run_config(steps=2),
                      out_dir=tmp_path)
    trainer.fit()
    model = load_model(tmp_path / "checkpoint.pt")
    assert type(model).__name__ == "VQVAE" and not model.training
    x = images(2, 16).tensors[0]
    trainer.model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model.reconstruct(x), trainer.model.reconstruct(x))


def test_a_slimmed_checkpoint_loads_the_same_model_but_refuses_to_resume(tmp_path, capsys):
    trainer = Trainer(build("vqvae"), images(8, 16), config=run_config(steps=2), out_dir=tmp_path)
    trainer.fit()
    path = tmp_path / "checkpoint.pt"
    before = load_model(path)
    assert cli.main(["checkpoint", "slim", str(path)]) == 0
    assert "MB ->" in capsys.readouterr().out
    ckpt = load_checkpoint(path)
    assert ckpt["optimizers"] == [] and ckpt["slimmed"] and ckpt["history"] == trainer.history
    after, x = load_model(path), images(2, 16).tensors[0]
    with torch.no_grad():
        torch.testing.assert_close(after.reconstruct(x), before.reconstruct(x))
    again = Trainer(build("vqvae"), images(8, 16), config=run_config(steps=4))
    with pytest.raises(CheckpointError, match="slimmed"):
        again.resume(path)


def test_a_half_slimmed_checkpoint_loads_float32_weights_rounded_to_float16(tmp_path):
    trainer = Trainer(build("vqvae"), images(8, 16), config=run_config(steps=2), out_dir=tmp_path)
    trainer.fit()
    path = tmp_path / "checkpoint.pt"
    full_size, trained = path.stat().st_size, {k: v.clone() for k, v in trainer.model.state_dict().items()}
    assert cli.main(["checkpoint", "slim", "--half", str(path)]) == 0
    ckpt = load_checkpoint(path)
    assert ckpt["stored_as"] == "float16" and ckpt["slimmed"]
    assert {v.dtype for v in ckpt["model"].values() if v.is_floating_point()} == {torch.float16}
    model = load_model(path)
    for name, value in model.state_dict().items():
        assert value.dtype == trained[name].dtype          # computes in float32 as before
        if value.is_floating_point():
            assert torch.equal(value, trained[name].half().float()), name
        else:
            assert torch.equal(value, trained[name]), name  # counters and flags stay exact
    assert path.stat().st_size < 0.25 * full_size       # Adam's states gone, the weights halved
    x = images(2, 16).tensors[0]
    with torch.no_grad():
        assert (model.reconstruct(x) - trainer.model.eval().reconstruct(x)).abs().max() < 0.05


# --- NaN guard and Ctrl-C ----------------------------------------------------------------

class Exploding(TinyAE):
    """Its loss becomes NaN from the ``bad_from``-th call on."""

    def __init__(self, bad_from: int):
        super().__init__()
        self.calls, self.bad_from = 0, bad_from

    def compute_loss(self, x):
        self.calls += 1
        loss, logs = super().compute_loss(x)
        if self.calls >= self.bad_from:
            loss = loss * float("nan")
        return loss, logs


@pytest.mark.parametrize("log_every,checkpoint_every", [(2, 2), (100, 3)])
def test_nan_guard_stops_and_keeps_the_last_good_checkpoint(tmp_path, log_every,
                                                             checkpoint_every):
    # (100, 3): no log sync before the step-6 checkpoint, so only the check inside
    # save_checkpoint stands between the NaN weights and the good file of step 3.
    model = Exploding(bad_from=5)
    trainer = Trainer(model, images(40), out_dir=tmp_path,
                      config=run_config(steps=10, log_every=log_every,
                                        checkpoint_every=checkpoint_every))
    with pytest.raises(NonFiniteLossError) as info:
        trainer.fit()
    good_step = 4 if checkpoint_every == 2 else 3
    message = str(info.value)
    assert "nan" in message and "checkpoint.pt" in message and f"step {good_step}" in message
    ckpt = load_checkpoint(tmp_path / "checkpoint.pt")
    assert ckpt["step"] == good_step
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values())
    assert not any(p.name.endswith(".tmp") for p in tmp_path.iterdir())


@pytest.mark.parametrize("how", ["raise", "signal"])
def test_ctrl_c_saves_a_checkpoint_and_returns(tmp_path, how):
    handler = signal.getsignal(signal.SIGINT)
    model = TinyAE()
    interrupt_after(model, 4, how)
    trainer = Trainer(model, images(40), config=run_config(steps=50, log_every=10),
                      out_dir=tmp_path)
    history = trainer.fit()  # returns instead of raising
    assert trainer.interrupted and trainer.step == 4
    assert load_checkpoint(tmp_path / "checkpoint.pt")["step"] == 4
    assert history["train/loss"][-1][0] == 4  # the pending logs were kept
    assert signal.getsignal(signal.SIGINT) is handler  # Ctrl-C works as before again


# --- logging ---------------------------------------------------------------------------

def test_logs_are_averaged_every_log_every_steps_and_evaluation_on_the_test_split():
    trainer = Trainer(TinyAE(), images(40), images(12, seed=5),
                      config=run_config(steps=10, log_every=4, eval_every=5, eval_batches=2))
    history = trainer.fit()
    assert [s for s, _ in history["train/loss"]] == [4, 8, 10]
    assert [s for s, _ in history["test/recon"]] == [5, 10]
    assert all(v > 0 for _, v in history["train/recon"])
    # evaluation is repeatable (fixed-seed dropout) and does not move the weights
    assert trainer.evaluate() == trainer.evaluate()


def test_vq_models_log_perplexity_and_vqgan_trains_both_networks():
    model = build("vqgan")
    disc_before = [p.detach().clone() for p in model.discriminator_parameters()]
    trainer = Trainer(model, images(16, 16), config=run_config(steps=4))
    history = trainer.fit()
    assert len(trainer.optimizers) == 2
    for key in ("train/perplexity", "train/usage", "train/d_loss", "train/lambda"):
        assert key in history, key
    # disc_start=2: the discriminator learned during steps 3 and 4
    assert any(not torch.equal(a, b) for a, b in zip(disc_before,
                                                    model.discriminator_parameters()))


# --- optimizers, schedulers, precision ---------------------------------------------------

@pytest.mark.parametrize("name,cls", [("Adam", torch.optim.Adam), ("adamw", torch.optim.AdamW),
                                      ("RMSprop", torch.optim.RMSprop), ("SGD", torch.optim.SGD)])
def test_optimizers_by_name(name, cls):
    opt = make_optimizer(name, nn.Linear(2, 2).parameters(), lr=0.01, weight_decay=0.1)
    assert type(opt) is cls and opt.param_groups[0]["lr"] == 0.01
    assert opt.param_groups[0]["weight_decay"] == 0.1


def test_unknown_names_raise_value_errors_listing_the_choices():
    params = nn.Linear(2, 2).parameters()
    with pytest.raises(ValueError, match="AdamW"):
        make_optimizer("adagrad", params, lr=0.1)
    opt = make_optimizer("sgd", nn.Linear(2, 2).parameters(), lr=0.1)
    with pytest.raises(ValueError, match="CosineAnnealingLR"):
        make_scheduler("OneCycle", opt, 10)
    with pytest.raises(ValueError, match="positive"):
        make_optimizer("sgd", nn.Linear(2, 2).parameters(), lr=-1)
    with pytest.raises(ValueError, match="amp"):
        TrainConfig(amp="fp8")


@pytest.mark.parametrize("name,final_lr", [("StepLR", 1e-6), ("ExponentialLR", 1e-4),
                                           ("CosineAnnealingLR", 0.0), ("none", 1e-3)])
def test_schedulers_by_name_span_the_run(name, final_lr):
    trainer = Trainer(TinyAE(), images(40), config=run_config(steps=9, scheduler=name))
    trainer.fit()
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(final_lr, abs=1e-9)
    if name == "StepLR":
        assert isinstance(trainer.schedulers[0], torch.optim.lr_scheduler.StepLR)


def test_gradient_clipping_bounds_the_gradient_norm():
    trainer = Trainer(TinyAE(), images(40), config=run_config(steps=3, grad_clip=1e-3))
    history = trainer.fit()
    assert "train/grad_norm" in history  # the norm before clipping is logged
    grads = [p.grad for p in trainer.model.parameters() if p.grad is not None]
    total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
    assert total <= 1e-3 * 1.01


def test_precision_choice_on_cpu():
    assert Trainer(TinyAE(), images(8), amp="auto").amp_dtype is None  # off on CPU
    bf16 = Trainer(TinyAE(), images(8), config=run_config(steps=2, amp="bf16"))
    assert bf16.amp_dtype is torch.bfloat16 and bf16.scaler is None
    bf16.fit()
    assert all(p.dtype == torch.float32 for p in bf16.model.parameters())  # autocast only
    with pytest.raises(ValueError, match="fp16"):
        Trainer(TinyAE(), images(8), amp="fp16")


def test_model_without_the_protocol_is_rejected():
    with pytest.raises(TypeError, match="compute_loss"):
        Trainer(nn.Linear(2, 2), images(8))


# --- the command line main job -----------------------------------------------------------

def _train(tmp_path, model, *extra):
    out = tmp_path / model
    argv = ["train", model, "--out", str(out), "--data-root", str(tmp_path / "data"),
            "--num-images", "40", "--image-size", "16", "--base-channels", "8",
            "--batch-size", "8", "--no-progress", *extra]
    return cli.main(argv), out


@pytest.mark.parametrize("model", ["autoencoder", "vqvae"])
def test_cli_main_job_writes_all_its_files(tmp_path, quick, model):
    rc, out = _train(tmp_path, model, "--steps", "3")
    assert rc == 0
    for name in ("checkpoint.pt", "config.json", "metrics.json", "reconstructions.png",
                 "loss_curves.png"):
        assert (out / name).stat().st_size > 0, name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["step"] == 3 and metrics["mse"] > 0 and 0 < metrics["psnr"] < 60
    # On the shapes data every run records the quality of its reconstructions (issue 10).
    assert metrics["recon_fd"] >= 0 and 0 <= metrics["recon_valid_shape_rate"] <= 1
    assert "16x16" in metrics["quality_split"]
    config = json.loads((out / "config.json").read_text())
    assert config["model"] == model and config["hparams"]["image_size"] == 16
    if model == "vqvae":
        assert 1 <= metrics["perplexity"] <= 512 and 0 < metrics["codebook_usage"] <= 1
        quick_recipe = recipe("vqvae_shapes")  # `train vqvae` runs its quick variant here
        assert config["hparams"]["num_codes"] == quick_recipe.model["num_codes"]
        assert config["hparams"]["decay"] == 0.99  # the class's default
        assert config["train"]["lr"] == quick_recipe.train["lr"] and config["recipe"] == "vqvae_shapes"
    assert type(load_model(out / "checkpoint.pt")).__name__ == type(
        MODELS[model](**config["hparams"])).__name__

    rc, _ = _train(tmp_path, model, "--steps", "5", "--resume")
    assert rc == 0 and load_checkpoint(out / "checkpoint.pt")["step"] == 5


def test_cli_reports_bad_input_in_one_line(tmp_path, quick, capsys):
    rc, _ = _train(tmp_path, "vae", "--steps", "1", "--set", "no_such_arg=1")
    assert rc == 2 and "no_such_arg" in capsys.readouterr().err
    rc, _ = _train(tmp_path, "vae", "--steps", "1", "--resume", str(tmp_path / "missing.pt"))
    assert rc == 2 and "missing.pt" in capsys.readouterr().err


def test_cli_help_lists_the_models_and_main_flags(capsys):
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    text = capsys.readouterr().out
    assert all(m in text for m in ("autoencoder", "vae", "vqvae", "vqgan"))
    with pytest.raises(SystemExit):
        cli.main(["train", "vqvae", "--help"])
    text = capsys.readouterr().out
    for flag in ("--image-size", "--base-channels", "--steps", "--epochs", "--lr", "--optimizer",
                 "--scheduler", "--batch-size", "--seed", "--device", "--amp", "--compile",
                 "--resume", "--num-codes", "--beta", "--quantizer", "--decay",
                 "--no-kmeans-init", "--dead-code-steps"):
        assert flag in text, flag


def _tiny_ae():
    return MODELS["autoencoder"](image_size=16, latent_size=8, base_channels=8)


def test_load_or_train_uses_a_good_checkpoint_in_normal_mode(tmp_path, normal):
    data = TensorDataset(torch.rand(8, 3, 16, 16) * 2 - 1)
    trained = Trainer(_tiny_ae(), data, out_dir=tmp_path, steps=2, batch_size=4, progress=False)
    trained.fit()
    model, history = load_or_train("autoencoder_shapes", data, checkpoint=tmp_path / "checkpoint.pt")
    assert not model.training and history == trained.history
    for a, b in zip(model.state_dict().values(), trained.model.state_dict().values()):
        assert torch.equal(a.cpu(), b.cpu())


def test_load_or_train_trains_when_the_checkpoint_is_unusable_or_in_quick_mode(tmp_path, monkeypatch):
    data = TensorDataset(torch.rand(8, 3, 32, 32) * 2 - 1)
    bad = tmp_path / "checkpoint.pt"
    bad.write_bytes(b"\x00truncated")
    monkeypatch.delenv("DLSTUDIO_LITE_QUICK", raising=False)
    with pytest.warns(UserWarning, match="training a new model instead"):
        model, history = load_or_train("crossdata_shapes/vae", data, checkpoint=bad, steps=2,
                                       batch_size=4)
    assert [s for s, _ in history["train/loss"]][-1] == 2
    monkeypatch.setenv("DLSTUDIO_LITE_QUICK", "1")   # quick mode trains even with a checkpoint
    good = tmp_path / "good"
    Trainer(_tiny_ae(), TensorDataset(torch.rand(8, 3, 16, 16) * 2 - 1), out_dir=good, steps=1,
            batch_size=4, progress=False).fit()
    _, history = load_or_train("crossdata_shapes/vae", data, checkpoint=good / "checkpoint.pt",
                               steps=3, batch_size=4)
    assert [s for s, _ in history["train/loss"]][-1] == 3


def test_load_or_train_by_recipe_loads_the_shipped_model_or_trains_the_quick_variant(monkeypatch):
    monkeypatch.delenv("DLSTUDIO_LITE_QUICK", raising=False)
    model, history = load_or_train("crossdata_shapes/vae")   # shipped: nothing is built
    assert model.hparams["base_channels"] == recipe("crossdata_shapes/vae").model["base_channels"]
    assert history["train/loss"][-1][0] == recipe("crossdata_shapes/vae").train["steps"]
    monkeypatch.setenv("DLSTUDIO_LITE_QUICK", "1")
    data = TensorDataset(torch.rand(8, 3, 32, 32) * 2 - 1)
    model, history = load_or_train("crossdata_shapes/vae", data, progress=False)
    quick = recipe("crossdata_shapes/vae")
    assert history["train/loss"][-1][0] == quick.train["steps"] and not model.training
    assert model.hparams["latent_size"] == quick.model["latent_size"]
