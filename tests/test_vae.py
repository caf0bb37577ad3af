"""VAE: KL closed form, reparameterization, the two reductions, prior sampling, ELBO."""
import math

import pytest
import torch

from dlstudio_lite.metrics import bits_per_dim, psnr
from dlstudio_lite.vae import VAE, kl_divergence, reparameterize

SMALL = dict(in_channels=1, image_size=16, latent_size=4, base_channels=8, latent_channels=4)


def images(b=3, c=1, s=16, seed=0):
    return torch.rand(b, c, s, s, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_kl_closed_form_matches_monte_carlo():
    torch.manual_seed(0)
    mu, logvar = torch.randn(2, 3) * 0.8, torch.randn(2, 3) * 0.5
    std = (0.5 * logvar).exp()
    z = mu + std * torch.randn(200_000, 2, 3)
    q = torch.distributions.Normal(mu, std)
    p = torch.distributions.Normal(0.0, 1.0)
    mc = (q.log_prob(z) - p.log_prob(z)).sum(-1).mean(0)  # E_q[log q - log p] per sample
    closed = kl_divergence(mu, logvar)
    assert closed.shape == (2,)
    assert torch.allclose(closed, mc, atol=0.02)
    assert torch.allclose(kl_divergence(torch.zeros(4, 5), torch.zeros(4, 5)), torch.zeros(4))


def test_reparameterize_passes_gradients_to_mean_and_log_variance():
    mu = torch.tensor([0.5, -1.0], requires_grad=True)
    logvar = torch.tensor([0.2, -0.4], requires_grad=True)
    torch.manual_seed(1)
    z = reparameterize(mu, logvar)
    torch.manual_seed(1)
    eps = torch.randn(2)
    assert torch.allclose(z, mu + (0.5 * logvar).exp() * eps)
    z.sum().backward()
    assert torch.allclose(mu.grad, torch.ones(2))
    assert torch.allclose(logvar.grad, 0.5 * (0.5 * logvar.detach()).exp() * eps)


def test_reparameterize_has_the_right_distribution():
    torch.manual_seed(0)
    mu, logvar = torch.full((100_000,), 2.0), torch.full((100_000,), math.log(9.0))
    z = reparameterize(mu, logvar)
    assert z.mean().item() == pytest.approx(2.0, abs=0.05)
    assert z.std().item() == pytest.approx(3.0, abs=0.05)


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_loss_is_recon_plus_beta_kl(reduction):
    torch.manual_seed(0)
    model = VAE(**SMALL, beta=0.3, reduction=reduction)
    x = images()
    torch.manual_seed(5)
    loss, logs = model.compute_loss(x)
    torch.manual_seed(5)
    x_hat, mu, logvar = model(x)
    se = (x_hat - x) ** 2
    kl = 0.5 * (mu ** 2 + logvar.exp() - 1 - logvar)
    if reduction == "sum":  # per image sums, averaged over the batch
        want = se.sum() / 3 + 0.3 * kl.sum() / 3
    else:  # per element means
        want = se.mean() + 0.3 * kl.mean()
    assert torch.allclose(loss, want, rtol=1e-5)
    assert torch.allclose(logs["recon"], se.mean(), rtol=1e-5)
    assert torch.allclose(logs["kl"], kl.sum() / 3, rtol=1e-5)


def test_sample_draws_latents_from_standard_normal():
    torch.manual_seed(0)
    model = VAE(**SMALL)
    seen = []
    decode = model.decode
    model.decode = lambda z: seen.append(z) or decode(z)
    out = model.sample(64)
    assert out.shape == (64, 1, 16, 16)
    z = seen[0]
    assert z.shape == (64, 4, 4, 4)
    # N(0, I): std 1, not exp(0.5) as with the lecture's logvar = 1 (bug 3)
    assert z.mean().item() == pytest.approx(0.0, abs=0.06)
    assert z.std().item() == pytest.approx(1.0, abs=0.05)


def test_elbo_uses_the_stated_gaussian_decoder():
    # With decoder variance 1/2, -log p(x|z) = summed squared error + D/2 log(pi).
    torch.manual_seed(0)
    model = VAE(**SMALL, decoder_std=math.sqrt(0.5))
    x = images()
    torch.manual_seed(3)
    elbo = model.elbo(x)
    torch.manual_seed(3)
    x_hat, mu, logvar = model(x)
    d = x[0].numel()
    want = -((x_hat - x) ** 2).flatten(1).sum(1) - 0.5 * d * math.log(math.pi) \
        - kl_divergence(mu, logvar)
    assert elbo.shape == (3,)
    assert torch.allclose(elbo, want, rtol=1e-5)
    torch.manual_seed(3)
    assert torch.allclose(model.bits_per_dim(x), bits_per_dim(-want, d), rtol=1e-5)


def test_bits_per_dim_of_a_uniform_density_is_eight():
    d = 12
    nll = torch.tensor(d * math.log(2.0))  # density 1/2 per dimension on [-1, 1]
    assert bits_per_dim(nll, d).item() == pytest.approx(8.0)


def test_psnr():
    x = torch.zeros(2, 3, 4, 4)
    assert psnr(x, x + 0.02).item() == pytest.approx(10 * math.log10(4 / 0.0004), rel=1e-4)
    with pytest.raises(ValueError):
        psnr(x, x[:, :1])


def test_protocol_and_shapes():
    torch.manual_seed(0)
    model = VAE(**SMALL)
    x = images()
    mu, logvar = model.encode(x)
    assert mu.shape == logvar.shape == (3, 4, 4, 4)
    assert model.decode(mu).shape == x.shape
    x_hat, _, _ = model(x)
    assert x_hat.shape == x.shape
    model.eval()
    with torch.no_grad():  # reconstruct decodes the mean: deterministic
        assert torch.equal(model.reconstruct(x), model.reconstruct(x))
    loss, logs = model.compute_loss(x)
    assert loss.dim() == 0 and loss.requires_grad and {"recon", "kl"} <= set(logs)
    loss.backward()
    assert model.mu_head.weight.grad is not None and model.logvar_head.weight.grad is not None


def test_hparams_rebuild_an_identical_model():
    torch.manual_seed(0)
    model = VAE(**SMALL, beta=0.5, reduction="mean").eval()
    clone = VAE(**model.hparams).eval()
    clone.load_state_dict(model.state_dict())
    x = images()
    with torch.no_grad():
        assert torch.equal(model.reconstruct(x), clone.reconstruct(x))
    assert clone.hparams == model.hparams


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="reduction"):
        VAE(**SMALL, reduction="batchmean")
    with pytest.raises(ValueError, match=r"\(B, 4, 4, 4\).*\(1, 4, 2, 2\)"):
        VAE(**SMALL).decode(torch.zeros(1, 4, 2, 2))
    with pytest.raises(ValueError, match="same shape"):
        kl_divergence(torch.zeros(2, 3), torch.zeros(2, 4))
