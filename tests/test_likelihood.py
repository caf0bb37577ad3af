"""Tests for the decoder's likelihood (dlstudio_lite.likelihood) and its use in VQ-VAE / VQGAN."""
import math

import pytest
import torch
import torch.nn.functional as F

from dlstudio_lite.checkpoint import load_model, rng_state, save_checkpoint
from dlstudio_lite.likelihood import BIN, LOG_SCALE_RANGE, mixture_mode, mixture_nll, output_channels
from dlstudio_lite.vqgan import VQGAN
from dlstudio_lite.vqvae import VQVAE


def random_params(b=2, k=3, c=3, h=4, w=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    params = torch.randn(b, k * (c + 1) + 1, h, w, generator=g)
    params[:, -1] = params[:, -1] * 0.3 - 1.5            # log scales well inside the clamp
    return params


def test_output_channels():
    assert output_channels("gaussian", 3, 2) == 3
    assert output_channels("mixture", 3, 2) == 9
    assert output_channels("mixture", 1, 4) == 9
    with pytest.raises(ValueError, match="unknown likelihood 'laplace'"):
        output_channels("laplace", 3, 2)
    with pytest.raises(ValueError, match="components >= 2, got 1"):
        output_channels("mixture", 3, 1)


def test_nll_is_the_probability_of_the_level_under_the_mixture():
    """Against the definition, in float64: P(level) = sum_k pi_k prod_c [CDF_k(x + bin/2) -
    CDF_k(x - bin/2)], the lowest and highest levels taking the tails."""
    k, c = 3, 3
    params = random_params(k=k, c=c).double()
    g = torch.Generator().manual_seed(1)
    x = (torch.randint(0, 256, (2, c, 4, 5), generator=g).double() / 127.5 - 1)
    x[0, :, 0, 0], x[1, :, 1, 1] = -1.0, 1.0                              # the two end levels
    b, _, h, w = params.shape
    means = params[:, :k * c].view(b, k, c, h, w)
    weights = torch.softmax(params[:, k * c:k * (c + 1)], 1)
    scale = params[:, -1:].exp().unsqueeze(1)
    cdf = lambda t: torch.sigmoid((t - means) / scale)                     # noqa: E731
    upper = torch.where(x.unsqueeze(1) > 1 - 1e-6, torch.ones_like(means), cdf(x.unsqueeze(1) + BIN / 2))
    lower = torch.where(x.unsqueeze(1) < -1 + 1e-6, torch.zeros_like(means), cdf(x.unsqueeze(1) - BIN / 2))
    prob = (weights * (upper - lower).prod(2)).sum(1)
    expected = -prob.log().mean() / c
    assert torch.allclose(mixture_nll(params, x, k), expected, rtol=1e-9, atol=1e-9)


def test_the_levels_probabilities_sum_to_one():
    params = random_params(b=1, k=2, c=1, h=1, w=1)
    levels = torch.arange(256).float() / 127.5 - 1
    total = sum(torch.exp(-mixture_nll(params, torch.full((1, 1, 1, 1), float(v)), 2)) for v in levels)
    assert abs(float(total) - 1) < 1e-4


def test_log_scale_is_clamped_from_below():
    params = random_params(k=2)
    x = torch.zeros(2, 3, 4, 5)
    params[:, -1] = -50.0                       # far narrower than a tenth of a level
    at_floor = params.clone()
    at_floor[:, -1] = LOG_SCALE_RANGE[0]
    assert torch.allclose(mixture_nll(params, x, 2), mixture_nll(at_floor, x, 2))
    assert math.isfinite(float(mixture_nll(params, x, 2)))


def test_mode_is_the_mean_of_the_heaviest_candidate():
    params = torch.zeros(1, 9, 1, 2)
    params[0, 0:3, 0, 0], params[0, 3:6, 0, 0] = -1.0, 0.5     # candidate 0 / 1 at pixel 0
    params[0, 0:3, 0, 1], params[0, 3:6, 0, 1] = 0.2, 0.9      # and at pixel 1
    params[0, 6, 0, 0], params[0, 7, 0, 0] = 2.0, 0.0          # pixel 0: candidate 0 heavier
    params[0, 6, 0, 1], params[0, 7, 0, 1] = -1.0, 1.0         # pixel 1: candidate 1 heavier
    mode = mixture_mode(params, 2)
    assert mode.shape == (1, 3, 1, 2)
    assert torch.equal(mode[0, :, 0, 0], torch.full((3,), -1.0))
    assert torch.equal(mode[0, :, 0, 1], torch.full((3,), 0.9))


def test_bad_parameter_layouts_raise():
    with pytest.raises(ValueError, match="K\\*\\(C\\+1\\)\\+1 channels for K=2, got 8"):
        mixture_mode(torch.zeros(1, 8, 2, 2), 2)
    with pytest.raises(ValueError, match="do not match the images"):
        mixture_nll(torch.zeros(1, 9, 2, 2), torch.zeros(1, 3, 4, 4), 2)


def test_an_uncertain_pixel_comes_back_as_one_side_not_the_blend():
    """The point of the module: a pixel that is background (-1) in 60% of cases and shape
    (+1) in 40% is fitted. The Gaussian's best image is the blend (-0.2), the mixture's mode
    is the background itself."""
    torch.manual_seed(0)
    targets = torch.tensor([-1.0] * 6 + [1.0] * 4).view(10, 1, 1, 1).expand(10, 3, 1, 1)
    gauss = torch.zeros(1, 3, 1, 1, requires_grad=True)
    mix = (torch.randn(1, 9, 1, 1) * 0.1).requires_grad_()
    opt = torch.optim.Adam([gauss, mix], lr=0.05)
    for _ in range(600):
        loss = F.mse_loss(gauss.expand_as(targets), targets) + mixture_nll(mix.expand(10, -1, -1, -1), targets, 2)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert torch.allclose(gauss.detach(), torch.full_like(gauss, -0.2), atol=0.02)
    assert torch.allclose(mixture_mode(mix.detach(), 2), torch.full((1, 3, 1, 1), -1.0), atol=0.02)


def tiny(cls=VQVAE, **kw):
    torch.manual_seed(0)
    args = dict(image_size=16, latent_size=4, base_channels=8, num_codes=16, code_dim=8,
                kmeans_init=False, dead_code_steps=0, likelihood="mixture", components=2)
    return cls(**{**args, **kw})


def test_vqvae_with_a_mixture_draws_images_and_trains_on_the_nll():
    model = tiny()
    x = torch.rand(4, 3, 16, 16) * 2 - 1
    assert model.decoder.conv_out.out_channels == 9
    model.eval()                                   # (a training forward moves the EMA codebook)
    x_hat, vq = model(x)
    assert x_hat.shape == x.shape
    assert torch.allclose(model.decode_indices(model.encode_to_indices(x)), x_hat, atol=1e-5)
    loss, logs = model.compute_loss(x)
    assert set(logs) >= {"recon", "nll", "vq"}
    params = model.decode_params(model.quantize(model.encode(x)).quantized)
    assert torch.allclose(logs["nll"], mixture_nll(params, x, 2))
    assert torch.allclose(logs["recon"], F.mse_loss(x_hat, x))
    loss.backward()
    assert model.encoder.conv_in.weight.grad is not None and model.encoder.conv_in.weight.grad.abs().sum() > 0


def test_a_gaussian_vqvae_is_unchanged_by_the_option():
    model = tiny(likelihood="gaussian").eval()
    x = torch.rand(4, 3, 16, 16) * 2 - 1
    loss, logs = model.compute_loss(x)
    assert model.decoder.conv_out.out_channels == 3 and "nll" not in logs
    x_hat, vq = model(x)
    assert torch.allclose(loss, F.mse_loss(x_hat, x) + vq.loss)


def test_a_mixture_model_round_trips_through_a_checkpoint(tmp_path):
    model = tiny(components=3)
    save_checkpoint({"model": model.state_dict(), "model_name": "vqvae", "hparams": model.hparams,
                     "optimizers": [], "schedulers": [], "step": 0, "epoch": 0, "history": {},
                     "rng": rng_state(), "config": {}}, tmp_path / "m.pt")
    again = load_model(tmp_path / "m.pt")
    assert again.likelihood == "mixture" and again.components == 3
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    model.eval(), again.eval()
    assert torch.equal(model.reconstruct(x), again.reconstruct(x))


def test_vqgan_with_a_mixture():
    model = tiny(VQGAN, disc_channels=8, disc_start=0)
    x = torch.rand(4, 3, 16, 16) * 2 - 1
    loss, logs, x_hat = model.generator_loss(x, step=1)
    assert x_hat.shape == x.shape and float(logs["lambda"]) > 0 and "nll" in logs
    loss.backward()
    with pytest.raises(ValueError, match="a mixture likelihood is its own pixel term"):
        tiny(VQGAN, recon_loss="l1")


def test_a_mixture_vqgan_trains_through_the_trainer():
    from dlstudio_lite.data import ShapesDataset
    from dlstudio_lite.train import Trainer

    data = ShapesDataset("train", image_size=16, num_images=64, test_size=16)
    model = tiny(VQGAN, disc_channels=8, disc_start=2)
    history = Trainer(model, data, steps=4, batch_size=8, lr=2e-4, log_every=1, progress=False,
                      device="cpu").fit()
    assert all(math.isfinite(v) for _, v in history["train/nll"])
    assert [v > 0 for _, v in history["train/lambda"]] == [False, False, True, True]
    model.eval()
    with torch.no_grad():
        x_hat = model.reconstruct(torch.rand(2, 3, 16, 16) * 2 - 1)
    assert x_hat.shape == (2, 3, 16, 16) and x_hat.abs().max() <= 1


def test_vqvae2_with_a_mixture_draws_images_at_both_levels_and_trains_on_the_nll(tmp_path):
    from dlstudio_lite.vqvae2 import VQVAE2

    model = VQVAE2(image_size=16, latent_size=8, base_channels=8, code_dim=8, num_codes_top=16,
                   num_codes_bottom=16, likelihood="mixture", drop_bottom=0.0)
    assert model.decoder.conv_out.out_channels == 9
    x = torch.rand(4, 3, 16, 16) * 2 - 1
    model.eval()
    top, bottom = model.encode_codes(x)
    for image in (model.reconstruct(x), model.reconstruct(x, levels="top"), model.decode_codes(top)):
        assert image.shape == x.shape and image.abs().max() <= 1
    assert torch.allclose(model.decode_codes(top, bottom), model.reconstruct(x), atol=1e-5)
    loss, logs = model.compute_loss(x)
    vq_top, vq_bottom, t = model.quantize_levels(x)
    params = model._decode_params(t, vq_bottom.quantized)
    assert torch.allclose(logs["nll"], mixture_nll(params, x, 2))
    assert torch.allclose(logs["recon"], F.mse_loss(model.reconstruct(x), x))
    assert torch.allclose(loss, logs["nll"] + logs["vq"])
    loss.backward()
    assert model.encoder.conv_in.weight.grad.abs().sum() > 0
    save_checkpoint({"model": model.state_dict(), "model_name": "vqvae2", "hparams": model.hparams,
                     "optimizers": [], "schedulers": [], "step": 0, "epoch": 0, "history": {},
                     "rng": rng_state(), "config": {}}, tmp_path / "m.pt")
    again = load_model(tmp_path / "m.pt").eval()
    assert again.likelihood == "mixture" and torch.equal(again.reconstruct(x), model.reconstruct(x))
