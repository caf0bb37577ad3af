# ---
# jupyter:
#   dlstudio_lite:
#     exercise: ex04_vae
#     title: 'Exercise 4: the VAE, reparameterization and its loss'
#   jupytext:
#     formats: py:percent
#     notebook_metadata_filter: dlstudio_lite
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Exercise 4: the VAE, reparameterization and its loss
#
# A VAE's encoder predicts `mu` and `logvar` of `q(z|x)`; the decoder must then see a
# *sample* `z`. Sampling is not differentiable, so the lecture's Eq. (21) rewrites it as
# a deterministic function of the parameters plus parameter-free noise:
#
# $$z = \mu + \sigma \odot \epsilon,\qquad \epsilon \sim \mathcal{N}(0, I),\qquad \sigma = \exp(\tfrac12 \log\sigma^2).$$
#
# Gradients then flow to `mu` and `logvar` through an ordinary multiply and add. This is
# the *reparameterization trick*.

# %%
import contextlib
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

_ = torch.manual_seed(0)  # it returns the generator: `_ =` keeps it from being printed


@contextlib.contextmanager
def skip_if_unanswered():
    """Around a check: a question not answered yet prints its message instead of a traceback."""
    try:
        yield
    except NotImplementedError as unanswered:
        print(unanswered)


def expect_close(what, got, expected, rtol=1e-5, atol=1e-6):
    """Visible checks: fail with both values, to six digits, and their relative error."""
    if got is None:
        raise AssertionError(f"{what}: expected {expected}, got None")
    got, expected = torch.as_tensor(got).detach().double(), torch.as_tensor(expected).detach().double()
    if got.shape != expected.shape:
        raise AssertionError(f"{what}: expected shape {tuple(expected.shape)}, got {tuple(got.shape)}")
    if not torch.allclose(got, expected, rtol=rtol, atol=atol):
        rel = float((got - expected).abs().max() / expected.abs().max().clamp_min(1e-12))
        show = lambda t: f"{t.item():.6g}" if t.dim() == 0 else f"\n{t.numpy().round(6)}\n"  # noqa: E731
        raise AssertionError(f"{what}: expected {show(expected)} got {show(got)} (relative error {rel:.2g})")

# %% [markdown]
# ## Question 1 (2 points): `reparameterize`
#
# Write `reparameterize(mu, logvar, generator=None)`: both inputs have shape `(B, d)`;
# return `z` of the same shape. Draw the noise with
# `torch.randn(mu.shape, generator=generator)` so that results are reproducible, and make
# sure gradients reach both `mu` and `logvar`.

# %%
def reparameterize(mu, logvar, generator=None):
    """One sample z = mu + sigma * eps of N(mu, diag(exp(logvar))): (B, d), (B, d) -> (B, d)."""
    ### BEGIN SOLUTION
    eps = torch.randn(mu.shape, generator=generator)
    return mu + torch.exp(0.5 * logvar) * eps
    ### END SOLUTION


# %% tags=["check"]
with skip_if_unanswered():
    mu = torch.zeros(2, 3, requires_grad=True)
    logvar = torch.zeros(2, 3, requires_grad=True)
    z = reparameterize(mu, logvar, torch.Generator().manual_seed(0))
    assert tuple(z.shape) == (2, 3), f"expected shape (2, 3), got {tuple(z.shape)}"
    assert z.requires_grad, "z does not require grad: the sample is cut off from mu and logvar"
    z.sum().backward()
    assert mu.grad is not None and torch.allclose(mu.grad, torch.ones(2, 3)), f"d z / d mu should be 1 everywhere, got {mu.grad}"
    assert logvar.grad is not None and logvar.grad.abs().sum() > 0, "no gradient reaches logvar"
    # Many samples from N(2, 0.25): the sample mean and standard deviation must match.
    z = reparameterize(torch.full((20_000, 1), 2.0), torch.full((20_000, 1), 0.25).log())
    assert abs(float(z.mean()) - 2.0) < 0.02 and abs(float(z.std()) - 0.5) < 0.02, \
        f"N(2, variance 0.25): expected mean 2.0 and std 0.5, got mean {float(z.mean()):.3f} and std {float(z.std()):.3f}"
    # The generator makes the sample reproducible: the same seed twice gives the same z.
    mu, logvar = torch.randn(1, 5), torch.randn(1, 5)
    first = reparameterize(mu, logvar, torch.Generator().manual_seed(4))
    expect_close("the same generator seed twice", reparameterize(mu, logvar, torch.Generator().manual_seed(4)), first, rtol=0, atol=0)
    print("reparameterize: the checks passed")

# %% tags=["hidden-tests"] question="reparameterize" points=2
g = rng(9)


def verdict(r, mu, logvar, eps):
    shape = tuple(mu.shape)
    expected = mu.detach() + (0.5 * logvar.detach()).exp() * eps
    z = r.tensor()
    assert tuple(z.shape) == shape, f"inputs {shape}: expected shape {shape}, got {tuple(z.shape)}"
    assert torch.allclose(z.detach(), expected, atol=1e-5), \
        f"inputs {shape}: with the given generator, z differs from mu + sigma * eps"
    g_mu, g_logvar = r.grad(0)
    assert g_mu is not None and torch.allclose(g_mu, torch.ones(shape)), f"inputs {shape}: the gradient with respect to mu is wrong or missing"
    assert g_logvar is not None and torch.allclose(g_logvar, 0.5 * (0.5 * logvar.detach()).exp() * eps, atol=1e-5), \
        f"inputs {shape}: the gradient with respect to logvar is wrong or missing"
    assert torch.equal(r.after(mu), mu.detach()) and torch.equal(r.after(logvar), logvar.detach()), "reparameterize changed its inputs"


for shape, seed in (((4, 6), 21), ((1, 3), 22)):
    mu = torch.randn(*shape, generator=g).requires_grad_()
    logvar = torch.randn(*shape, generator=g).requires_grad_()
    gen = Gen(seed)
    eps = torch.randn(*shape, generator=gen.make())
    check(Call("reparameterize", mu, logvar, gen, grads=[Grad([(Out(), torch.ones(shape))], wrt=[mu, logvar])]),
          verdict, mu=mu, logvar=logvar, eps=eps)

# %% [markdown]
# ## Question 2 (3 points): the VAE loss
#
# Write `vae_loss(x, x_hat, mu, logvar, kl_weight=1.0)` returning `(loss, recon, kl)`:
#
# * `recon`: the squared error summed over all pixels of an image, averaged over the batch;
# * `kl`: $D_{KL}(q(z|x)\Vert\mathcal{N}(0,I)) = -\frac12\sum_i(1 + \log\sigma_i^2 - \mu_i^2 - \sigma_i^2)$
#   summed over the latent dimensions, averaged over the batch;
# * `loss = recon + kl_weight * kl`, the negative ELBO (up to constants) when `kl_weight=1`.
#
# `x` and `x_hat` have shape `(B, C, H, W)`, `mu` and `logvar` shape `(B, d)`; all three
# results are scalar tensors.

# %%
def vae_loss(x, x_hat, mu, logvar, kl_weight=1.0):
    """Negative ELBO pieces, each a scalar averaged over the batch: returns (loss, recon, kl)."""
    ### BEGIN SOLUTION
    B = x.shape[0]
    recon = F.mse_loss(x_hat, x, reduction="sum") / B
    kl = -0.5 * torch.sum(1 + logvar - mu**2 - logvar.exp()) / B
    return recon + kl_weight * kl, recon, kl
    ### END SOLUTION


# %% tags=["check"]
with skip_if_unanswered():
    x = torch.zeros(2, 1, 2, 2)
    x_hat = torch.ones(2, 1, 2, 2)
    mu, logvar = torch.zeros(2, 3), torch.zeros(2, 3)
    loss, recon, kl = vae_loss(x, x_hat, mu, logvar)
    assert abs(float(recon) - 4.0) < 1e-6, f"4 pixels off by 1 per image: expected recon 4.0, got {float(recon)}"
    assert abs(float(kl)) < 1e-6, f"q = N(0, I): expected kl 0.0, got {float(kl)}"
    _, _, kl = vae_loss(x, x_hat, torch.ones(2, 3), logvar)
    assert abs(float(kl) - 1.5) < 1e-6, f"mu = 1 in 3 dimensions: expected kl 1.5, got {float(kl)} (KL must be >= 0)"
    # Variance 2 (logvar = log 2) in 3 dimensions, and kl_weight = 0.5 on the KL term only.
    loss, recon, kl = vae_loss(x, x_hat, torch.zeros(2, 3), torch.full((2, 3), math.log(2.0)), kl_weight=0.5)
    expected_kl = 3 * 0.5 * (2.0 - 1.0 - math.log(2.0))
    expect_close("kl with logvar = log 2", kl, expected_kl)
    expect_close("loss = recon + 0.5 * kl", loss, 4.0 + 0.5 * expected_kl)
    print("vae_loss: the checks passed")

# %% tags=["hidden-tests"] question="vae_loss" points=3
g = rng(12)


def verdict(r, w, recon_ref, kl_ref, shape):
    loss, recon, kl = r.outputs(3)
    for name, value in (("loss", loss), ("recon", recon), ("kl", kl)):
        assert torch.is_tensor(value) and value.dim() == 0, f"{name} should be a scalar tensor"
    assert torch.allclose(recon, recon_ref, rtol=1e-4), f"inputs {shape}: recon is not the summed squared error divided by the batch size"
    assert torch.allclose(kl, kl_ref, rtol=1e-4), f"inputs {shape}: kl is not KL(q || N(0, I)) summed over latents and averaged over the batch"
    assert torch.allclose(loss, recon_ref + w * kl_ref, rtol=1e-4), \
        f"loss with kl_weight={w}: not recon + kl_weight * kl"


for (B, C, H, W, d), w in (((5, 3, 4, 4, 7), 1.0), ((5, 3, 4, 4, 7), 0.1), ((1, 2, 3, 5, 2), 0.5)):   # a batch of one, non-square
    x, x_hat = torch.randn(B, C, H, W, generator=g), torch.randn(B, C, H, W, generator=g)
    mu, logvar = torch.randn(B, d, generator=g), torch.randn(B, d, generator=g)
    recon_ref = ((x_hat - x) ** 2).sum() / B
    kl_ref = 0.5 * (logvar.exp() + mu**2 - 1 - logvar).sum() / B
    check(Call("vae_loss", x, x_hat, mu, logvar, kl_weight=w), verdict, w=w, recon_ref=recon_ref, kl_ref=kl_ref,
          shape=(B, C, H, W))

# %% [markdown]
# ## A VAE in two dimensions
#
# A tiny VAE on points of a noisy ring, trained for two hundred steps with your two
# functions. The loss should fall; then decoding samples `z ~ N(0, I)` (not `N(0, e)`:
# the prior's log-variance is **zero**) gives new points near the ring.

# %% tags=["uses-answers"]
with skip_if_unanswered():
    torch.manual_seed(0)
    torch.set_num_threads(1)  # layers this small run faster on one thread than on several that wait for each other
    angle = torch.rand(512) * 2 * torch.pi
    data = torch.stack([angle.cos(), angle.sin()], dim=1) + 0.05 * torch.randn(512, 2)
    encoder = nn.Sequential(nn.Linear(2, 32), nn.ReLU(), nn.Linear(32, 4))   # -> mu (2) and logvar (2)
    decoder = nn.Sequential(nn.Linear(2, 32), nn.ReLU(), nn.Linear(32, 2))
    opt = torch.optim.Adam([*encoder.parameters(), *decoder.parameters()], lr=1e-2)
    for step in range(200):
        batch = data[torch.randint(0, 512, (128,))]
        mu, logvar = encoder(batch).chunk(2, dim=1)
        z = reparameterize(mu, logvar)
        loss, recon, kl = vae_loss(batch, decoder(z), mu, logvar, kl_weight=0.1)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 50 == 0 or step == 199:
            print(f"step {step:3d}: loss {loss.item():.3f} (recon {recon.item():.3f}, kl {kl.item():.3f})")
    with torch.no_grad():
        samples = decoder(torch.randn(1000, 2))
    print(f"mean distance of generated points from the origin: {float(samples.norm(dim=1).mean()):.2f} (the ring has radius 1)")
