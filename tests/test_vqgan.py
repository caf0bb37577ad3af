"""Tests for the VQGAN: discriminator, GAN losses, adaptive lambda, the two training steps."""
import copy
import math
import urllib.error

import pytest
import torch
import torch.nn.functional as F

from dlstudio_lite.vqvae import VQVAE
from dlstudio_lite.vqgan import (VQGAN, PatchDiscriminator, PerceptualLoss, adaptive_lambda,
                                 discriminator_gan_loss, generator_gan_loss)

START = 2  # disc_start of the tiny model


def tiny_vqgan(**kw) -> VQGAN:
    torch.manual_seed(0)
    args = dict(image_size=16, latent_size=4, base_channels=8, num_codes=16, code_dim=8,
                disc_channels=8, disc_start=START, kmeans_init=False, dead_code_steps=0)
    args.update(kw)  # (no k-means start: these tests compare a model with its deep copy)
    return VQGAN(**args)


def images(n=4, seed=0, size=16):
    g = torch.Generator().manual_seed(seed)
    # smooth-ish images: blocks of colour, so they differ in kind from noise
    x = torch.rand(n, 3, size // 4, size // 4, generator=g) * 2 - 1
    return F.interpolate(x, size=size, mode="nearest")


def grads(params):
    return [None if p.grad is None else p.grad.clone() for p in params]


def all_zero(gs):
    return all(g is None or not g.any() for g in gs)


# --- discriminator ------------------------------------------------------------------------------

@pytest.mark.parametrize("size, layers", [(16, 1), (32, 2), (64, 3)])
def test_patch_discriminator_gives_one_logit_per_patch(size, layers):
    d = PatchDiscriminator(base_channels=8, image_size=size)
    assert d.num_layers == layers
    assert d(torch.randn(2, 3, size, size)).shape == (2, 1, 6, 6)


def test_patch_discriminator_rejects_too_deep_layouts():
    with pytest.raises(ValueError, match="no patch"):
        PatchDiscriminator(image_size=16, num_layers=3)
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        PatchDiscriminator(image_size=16)(torch.randn(3, 16, 16))


def test_discriminator_learns_from_both_real_and_fake_images():
    model = tiny_vqgan()
    x, fake, other_fake = images(seed=0), images(seed=1), images(seed=2)
    d_params = list(model.discriminator_parameters())

    def d_grads(real, fake):
        model.zero_grad(set_to_none=True)
        model.discriminator_loss(real, fake, step=START)[0].backward()
        return torch.cat([p.grad.flatten() for p in d_params])

    base = d_grads(x, fake)
    assert base.abs().sum() > 0
    # Bug 4 (detaching D's output on fakes) would make the gradient blind to the fakes.
    assert not torch.allclose(base, d_grads(x, other_fake))
    assert not torch.allclose(base, d_grads(images(seed=3), fake))


def test_discriminator_loss_on_fakes_goes_down_when_trained_alone():
    model = tiny_vqgan()
    real = images(8, seed=0)
    with torch.no_grad():
        fake = model.reconstruct(real)  # an untrained generator's blurry output
    opt = torch.optim.Adam(model.discriminator_parameters(), lr=1e-3, betas=(0.5, 0.9))

    def fake_term():
        with torch.no_grad():
            return F.relu(1 + model.discriminator(fake)).mean().item()

    before = fake_term()
    for _ in range(25):
        loss, logs = model.discriminator_loss(real, fake, step=START)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert fake_term() < 0.5 * before
    assert logs["d_real"] > logs["d_fake"]


def test_discriminator_step_does_not_reach_the_generator():
    model = tiny_vqgan()
    x = images()
    _, _, x_hat = model.generator_loss(x, step=START)
    assert x_hat.requires_grad  # x_hat still carries the generator's graph ...
    model.zero_grad(set_to_none=True)
    model.discriminator_loss(x, x_hat, step=START)[0].backward()
    assert all_zero(grads(model.generator_parameters()))  # ... but the D loss cuts it
    assert not all_zero(grads(model.discriminator_parameters()))


def test_generator_step_leaves_no_gradients_on_the_discriminator():
    model = tiny_vqgan()
    loss, _, _ = model.generator_loss(images(), step=START)
    loss.backward()
    assert all_zero(grads(model.discriminator_parameters()))
    assert all(p.requires_grad for p in model.discriminator_parameters())  # restored


# --- generator ----------------------------------------------------------------------------------

def test_gan_term_reaches_the_decoder_after_the_start_step():
    model, x = tiny_vqgan(), images()
    # Same model and batch, once just before and once at the start step: the difference of
    # the decoder's gradients is lambda * grad(g_gan), which must not vanish.
    def decoder_grads(step):
        m = copy.deepcopy(model)
        loss, logs, _ = m.generator_loss(x, step)
        loss.backward()
        return [p.grad.clone() for p in m.decoder.parameters()], logs

    before, logs_before = decoder_grads(START - 1)
    after, logs_after = decoder_grads(START)
    assert logs_before["g_gan"] == 0 and logs_after["g_gan"] != 0
    diffs = [(a - b).abs().sum().item() for a, b in zip(after, before)]
    assert diffs[-1] > 0 and diffs[0] > 0  # the last layer and the first decoder layer


def test_adaptive_lambda_is_the_ratio_of_gradient_norms():
    w = torch.randn(3, 2, requires_grad=True)
    a = torch.tensor([[3.0, 0.0], [0.0, 4.0], [0.0, 0.0]])  # norm 5
    b = torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.0, 0.0]])  # norm sqrt(2)
    rec, gan = (a * w).sum(), (b * w).sum()   # gradients w.r.t. w are a and b
    lam = adaptive_lambda(rec, gan, w, delta=1e-4)
    assert lam.item() == pytest.approx(5 / (math.sqrt(2) + 1e-4), rel=1e-6)
    assert not lam.requires_grad
    # a GAN loss that ignores the layer: the ratio blows up and is clamped
    assert adaptive_lambda(rec, (0 * w).sum(), w).item() == pytest.approx(1e4)


def test_lambda_in_the_logs_matches_eq_26():
    model, x = tiny_vqgan(disc_weight=0.5), images()
    ref = copy.deepcopy(model)
    _, logs, _ = model.generator_loss(x, step=START)
    # Recompute Eq. 26 from scratch on an identical copy.
    x_hat, _ = ref(x)  # the VQGAN is a VQVAE: its forward is the generator's
    w = ref.last_layer_weight
    g_rec = torch.autograd.grad(F.mse_loss(x_hat, x), w, retain_graph=True)[0]
    g_gan = torch.autograd.grad(-ref.discriminator(x_hat).mean(), w)[0]
    expected = 0.5 * g_rec.norm() / (g_gan.norm() + 1e-6)
    assert logs["lambda"].item() == pytest.approx(expected.item(), rel=1e-4)
    assert logs["lambda"] > 0


def test_everything_adversarial_is_off_before_the_start_step():
    model, x = tiny_vqgan(), images()
    ref = copy.deepcopy(model)
    loss, logs, _ = model.generator_loss(x, step=START - 1)
    assert logs["lambda"] == 0 and logs["g_gan"] == 0
    torch.testing.assert_close(loss, ref.compute_loss(x)[0])  # plain VQ-VAE loss
    d_loss, d_logs = model.discriminator_loss(x, torch.zeros_like(x), step=START - 1)
    assert d_logs["d_loss"] == 0
    d_loss.backward()  # a valid graph for the trainer, which changes nothing
    assert all_zero(grads(model.discriminator_parameters()))


def test_generator_logs_and_hparams():
    model = tiny_vqgan(gan_loss="non_saturating")
    _, logs, x_hat = model.generator_loss(images(), step=START)
    assert {"recon", "vq", "perplexity", "usage", "g_gan", "lambda"} <= set(logs)
    assert x_hat.shape == (4, 3, 16, 16)
    assert all(not v.requires_grad for v in logs.values())
    clone = VQGAN(**model.hparams)
    clone.load_state_dict(model.state_dict())
    assert clone.hparams == model.hparams and clone.disc_start == START
    with pytest.raises(ValueError, match="gan_loss"):
        tiny_vqgan(gan_loss="wasserstein")


def test_vqgan_is_a_vqvae_and_reuses_its_methods():
    model, x = tiny_vqgan().eval(), images()
    idx = model.encode_to_indices(x)
    assert idx.shape == (4, 4, 4) and idx.max() < model.num_codes
    with torch.no_grad():
        torch.testing.assert_close(model.decode_indices(idx), model.reconstruct(x))
        loss, logs = model.compute_loss(x)  # evaluation works without gradients
    assert {"recon", "vq", "perplexity", "usage"} <= set(logs)
    assert model.last_layer_weight is model.decoder.conv_out.weight
    assert isinstance(model, VQVAE) and "decode_indices" not in VQGAN.__dict__
    # generator and discriminator parameters split the model's parameters exactly
    ids = [{id(p) for p in ps} for ps in (model.generator_parameters(),
                                           model.discriminator_parameters())]
    assert not ids[0] & ids[1] and ids[0] | ids[1] == {id(p) for p in model.parameters()}


def test_checkpoints_of_the_vqvae_attribute_layout_still_load():
    # Before the VQGAN subclassed VQVAE, its generator was an attribute: weights were named
    # "generator.encoder..." and the quantizer was chosen with ema=True/False.
    model = tiny_vqgan().eval()
    old = {(k if k.startswith("discriminator.") else f"generator.{k}"): v
           for k, v in model.state_dict().items()}
    hparams = VQGAN.upgrade_hparams({**{k: v for k, v in model.hparams.items()
                                        if k != "quantizer"}, "ema": True})
    assert hparams == model.hparams
    clone = VQGAN(**hparams).eval()
    clone.load_state_dict(old)
    x = images()
    with torch.no_grad():
        torch.testing.assert_close(clone.reconstruct(x), model.reconstruct(x))


# --- losses -------------------------------------------------------------------------------------

def test_gan_losses_on_known_logits():
    real, fake = torch.full((2, 1, 3, 3), 2.0), torch.full((2, 1, 3, 3), -0.5)
    # hinge: real beyond the margin costs nothing, fake at -0.5 costs 0.5 -> 0.5 * 0.5
    assert discriminator_gan_loss(real, fake, "hinge").item() == pytest.approx(0.25)
    assert generator_gan_loss(fake, "hinge").item() == pytest.approx(0.5)
    zero = torch.zeros(4)
    assert discriminator_gan_loss(zero, zero, "non_saturating").item() == pytest.approx(math.log(2))
    assert generator_gan_loss(zero, "non_saturating").item() == pytest.approx(math.log(2))
    # non-saturating: the generator's gradient stays large when D confidently rejects fakes
    logit = torch.tensor([-8.0], requires_grad=True)
    generator_gan_loss(logit, "non_saturating").backward()
    assert logit.grad.abs().item() > 0.99
    with pytest.raises(ValueError, match="hinge"):
        generator_gan_loss(zero, "least_squares")


def test_perceptual_loss_without_weights_raises_a_helpful_error(monkeypatch):
    import torchvision.models

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torchvision.models, "vgg16", offline)
    with pytest.raises(RuntimeError, match="pretrained VGG16 weights") as info:
        PerceptualLoss()
    assert "perceptual_weight=0" in str(info.value) and "weights_path" in str(info.value)
    with pytest.raises(RuntimeError, match="pretrained VGG16 weights"):
        tiny_vqgan(perceptual_weight=1.0)


def test_perceptual_loss_with_local_weights(tmp_path):
    # Random (not pretrained) VGG16 feature weights saved locally stand in for the real file.
    import torchvision.models
    with torch.device("meta"):
        shapes = torchvision.models.vgg16().features.state_dict()
    g = torch.Generator().manual_seed(0)
    path = tmp_path / "vgg16.pth"
    torch.save({f"features.{k}": 0.05 * torch.randn(v.shape, generator=g) for k, v in shapes.items()}, path)
    loss_fn = PerceptualLoss(weights_path=str(path))
    assert list(loss_fn.state_dict()) == []  # VGG stays out of checkpoints
    x = images(2, size=32)
    assert loss_fn(x, x).item() == pytest.approx(0.0, abs=1e-6)
    assert loss_fn(x, images(2, seed=5, size=32)).item() > 0


# --- training through the shared trainer ---------------------------------------------------------

def test_vqgan_trains_through_the_trainer():
    from dlstudio_lite.data import ShapesDataset
    from dlstudio_lite.train import Trainer

    data = ShapesDataset("train", image_size=16, num_images=64, test_size=16)
    model = tiny_vqgan()
    trainer = Trainer(model, data, steps=5, batch_size=8, lr=2e-4, betas=(0.5, 0.9),
                      log_every=1, progress=False, device="cpu")
    assert len(trainer.optimizers) == 2
    history = trainer.fit()
    lam = [v for _, v in history["train/lambda"]]
    d_loss = [v for _, v in history["train/d_loss"]]
    assert lam[:START] == [0, 0] and all(v > 0 for v in lam[START:])
    assert d_loss[:START] == [0, 0] and all(v > 0 for v in d_loss[START:])
    assert all(math.isfinite(v) for _, v in history["train/loss"])
    assert "train/g_gan" in history and "train/recon" in history


def test_disc_lr_scale_slows_only_the_discriminator():
    from dlstudio_lite.data import ShapesDataset
    from dlstudio_lite.train import Trainer

    data = ShapesDataset("train", image_size=16, num_images=32, test_size=8)
    model = tiny_vqgan(disc_lr_scale=0.1)
    trainer = Trainer(model, data, steps=1, batch_size=8, lr=2e-4, progress=False, device="cpu")
    g_opt, d_opt = trainer.optimizers
    assert [group["lr"] for group in g_opt.param_groups] == [2e-4]
    assert [group["lr"] for group in d_opt.param_groups] == [pytest.approx(2e-5)]
    assert VQGAN(**model.hparams).disc_lr_scale == 0.1
    with pytest.raises(ValueError, match="disc_lr_scale"):
        tiny_vqgan(disc_lr_scale=0.0)


def test_the_adaptive_lambda_delta_is_stated_once():
    import inspect

    from dlstudio_lite import vqgan
    assert vqgan.ADAPTIVE_LAMBDA_DELTA == 1e-6  # the lecture's value (taming-transformers: 1e-4)
    assert inspect.signature(vqgan.adaptive_lambda).parameters["delta"].default == vqgan.ADAPTIVE_LAMBDA_DELTA
    assert inspect.signature(vqgan.VQGAN.__init__).parameters["delta"].default == vqgan.ADAPTIVE_LAMBDA_DELTA
    assert inspect.getsource(vqgan).count("= 1e-6") == 1  # the constant, and no other default
