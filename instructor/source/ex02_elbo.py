# ---
# jupyter:
#   dlstudio_lite:
#     exercise: ex02_elbo
#     title: 'Exercise 2: the ELBO and the KL divergence'
#   jupytext:
#     formats: py:percent
#     notebook_metadata_filter: dlstudio_lite
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Exercise 2: the ELBO and the KL divergence
#
# A VAE maximises the evidence lower bound
#
# $$\mathrm{ELBO} = \mathbb{E}_{q(z|x)}\left[\log p(x|z)\right] - D_{KL}\left(q(z|x)\,\Vert\,p(z)\right).$$
#
# The encoder outputs, for each image, the mean `mu` and the log-variance `logvar` of a
# diagonal Gaussian `q(z|x)` over a `d`-dimensional latent. For two diagonal Gaussians the
# KL term has a closed form, summed over the `d` dimensions:
#
# $$D_{KL}(q \Vert p) = \frac12 \sum_{i=1}^{d}\left(\log\frac{\sigma_{p,i}^2}{\sigma_{q,i}^2}
#   + \frac{\sigma_{q,i}^2 + (\mu_{q,i} - \mu_{p,i})^2}{\sigma_{p,i}^2} - 1\right).$$
#
# The KL divergence is not symmetric: $D_{KL}(q\Vert p) \ne D_{KL}(p\Vert q)$ in general,
# and the ELBO needs the one *from q to p* (the expectation is taken under `q`). You will
# write the closed form, then check it the way you would check any formula you are not
# sure of: by Monte-Carlo sampling.

# %%
import contextlib
import math

import torch

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
# ## Question 1 (3 points): the closed form
#
# Write `kl_diag_gaussians(mu_q, logvar_q, mu_p, logvar_p)`. All four tensors have shape
# `(B, d)`; return the KL divergence $D_{KL}(q\Vert p)$ of each row, shape `(B,)`.
# Work with log-variances throughout: $\sigma^2$ = `logvar.exp()`.

# %%
def kl_diag_gaussians(mu_q, logvar_q, mu_p, logvar_p):
    """KL(q || p) of diagonal Gaussians given by means and log-variances: four (B, d) -> (B,)."""
    ### BEGIN SOLUTION
    var_q, var_p = logvar_q.exp(), logvar_p.exp()
    terms = logvar_p - logvar_q + (var_q + (mu_q - mu_p) ** 2) / var_p - 1.0
    return 0.5 * terms.sum(dim=-1)
    ### END SOLUTION


# %% tags=["check"]
# Check 1: a distribution has zero divergence from itself.
with skip_if_unanswered():
    mu, logvar = torch.randn(3, 4), torch.randn(3, 4)
    kl = kl_diag_gaussians(mu, logvar, mu, logvar)
    assert tuple(kl.shape) == (3,), f"expected shape (3,) (one value per row), got {tuple(kl.shape)}"
    assert torch.allclose(kl, torch.zeros(3), atol=1e-6), f"KL(q || q) should be 0, got {kl}"
    # Check 2: against a standard-normal prior the formula reduces to the familiar VAE term.
    zeros = torch.zeros(3, 4)
    expected = -0.5 * (1 + logvar - mu**2 - logvar.exp()).sum(dim=1)
    kl = kl_diag_gaussians(mu, logvar, zeros, zeros)
    assert torch.allclose(kl, expected, atol=1e-5), f"prior N(0, I): expected {expected}, got {kl}"
    print("kl_diag_gaussians: the checks passed")

# %% tags=["hidden-tests"] question="kl_closed_form" points=3
from torch.distributions import Normal, kl_divergence

g = rng(3)


def verdict(r, B, d, expected):
    got = r.tensor()
    assert tuple(got.shape) == (B,), f"inputs of shape {(B, d)}: expected output shape {(B,)}, got {tuple(got.shape)}"
    assert torch.allclose(got, expected, rtol=1e-4, atol=1e-5), \
        f"two non-standard Gaussians of dimension {d}: the values differ from KL(q || p)"


for B, d in ((4, 3), (2, 7)):
    mu_q, mu_p = torch.randn(B, d, generator=g), torch.randn(B, d, generator=g)
    logvar_q, logvar_p = torch.randn(B, d, generator=g), torch.randn(B, d, generator=g)
    expected = kl_divergence(Normal(mu_q, (0.5 * logvar_q).exp()), Normal(mu_p, (0.5 * logvar_p).exp())).sum(-1)
    check(Call("kl_diag_gaussians", mu_q, logvar_q, mu_p, logvar_p), verdict, B=B, d=d, expected=expected)

# %% [markdown]
# ## Question 2 (2 points): a Monte-Carlo check
#
# The KL divergence is an expectation under `q`:
# $D_{KL}(q\Vert p) = \mathbb{E}_{z\sim q}\left[\log q(z) - \log p(z)\right]$, with the
# log-density of a diagonal Gaussian
# $\log \mathcal{N}(z;\mu,\sigma^2) = -\frac12\sum_i\left(\log 2\pi + \log\sigma_i^2 + \frac{(z_i-\mu_i)^2}{\sigma_i^2}\right)$.
#
# Write `kl_monte_carlo(mu_q, logvar_q, mu_p, logvar_p, num_samples, generator)` that
# estimates it by averaging over `num_samples` draws of `z` from `q`. Draw the noise with
# exactly one call, `eps = torch.randn(num_samples, *mu_q.shape, generator=generator)`, and
# set `z = mu_q + sigma_q * eps` (shape `(num_samples, B, d)`), so that your estimate is
# reproducible. Return shape `(B,)`.

# %%
def kl_monte_carlo(mu_q, logvar_q, mu_p, logvar_p, num_samples, generator=None):
    """Monte-Carlo estimate of KL(q || p) from num_samples draws of q: four (B, d) -> (B,)."""
    ### BEGIN SOLUTION
    def log_normal(z, mu, logvar):
        return -0.5 * (math.log(2 * math.pi) + logvar + (z - mu) ** 2 / logvar.exp()).sum(dim=-1)

    eps = torch.randn(num_samples, *mu_q.shape, generator=generator)
    z = mu_q + torch.exp(0.5 * logvar_q) * eps                       # (S, B, d)
    return (log_normal(z, mu_q, logvar_q) - log_normal(z, mu_p, logvar_p)).mean(dim=0)
    ### END SOLUTION


# %% tags=["check"]
# Check: with 20 000 samples the estimate lands within a few hundredths of your closed form.
with skip_if_unanswered():
    mu_q, logvar_q = torch.tensor([[0.5, -1.0]]), torch.tensor([[-0.5, 0.3]])
    mu_p, logvar_p = torch.zeros(1, 2), torch.zeros(1, 2)
    estimate = kl_monte_carlo(mu_q, logvar_q, mu_p, logvar_p, 20_000, torch.Generator().manual_seed(0))
    exact = 0.5 * (-logvar_q + logvar_q.exp() + mu_q**2 - 1).sum(dim=1)
    assert tuple(estimate.shape) == (1,), f"expected shape (1,), got {tuple(estimate.shape)}"
    assert abs(float(estimate) - float(exact)) < 0.05, \
        f"expected about {float(exact):.3f} (the closed form), got {float(estimate):.3f}"
    # The generator makes the estimate reproducible: the same seed twice gives the same number.
    again = kl_monte_carlo(mu_q, logvar_q, mu_p, logvar_p, 20_000, torch.Generator().manual_seed(0))
    expect_close("the same generator seed twice", again, estimate, rtol=0, atol=0)
    print(f"Monte-Carlo {float(estimate):.4f} vs closed form {float(exact):.4f}: the check passed")

# %% tags=["hidden-tests"] question="kl_monte_carlo" points=2
g = rng(8)


def verdict(r, S, B, d, expected):
    got = r.tensor()
    assert tuple(got.shape) == (B,), f"inputs of shape {(B, d)}: expected output shape {(B,)}, got {tuple(got.shape)}"
    assert torch.allclose(got, expected, rtol=1e-4, atol=1e-4), \
        f"{S} samples, inputs {(B, d)}: the estimate differs from the average of log q(z) - log p(z) over the draws of the given generator"


for (B, d), S, seed in (((3, 5), 1, 0), ((3, 5), 7, 1), ((3, 5), 500, 2), ((1, 2), 9, 3)):   # the last: a batch of one
    mu_q, mu_p = torch.randn(B, d, generator=g), torch.randn(B, d, generator=g)
    logvar_q, logvar_p = torch.randn(B, d, generator=g), torch.randn(B, d, generator=g)
    gen = Gen(seed)                              # seeded from this run's seed and `seed`
    eps = torch.randn(S, B, d, generator=gen.make())
    z = mu_q + (0.5 * logvar_q).exp() * eps
    lq = -0.5 * (math.log(2 * math.pi) + logvar_q + (z - mu_q) ** 2 / logvar_q.exp()).sum(-1)
    lp = -0.5 * (math.log(2 * math.pi) + logvar_p + (z - mu_p) ** 2 / logvar_p.exp()).sum(-1)
    check(Call("kl_monte_carlo", mu_q, logvar_q, mu_p, logvar_p, S, gen), verdict, S=S, B=B, d=d, expected=(lq - lp).mean(0))

# %% [markdown]
# ## How fast does the estimate settle?
#
# The error of a Monte-Carlo average shrinks like $1/\sqrt{S}$: a hundred times more
# samples buy one more correct digit. This is why the VAE uses the closed form for the KL
# term and keeps sampling (one draw per image) only for the reconstruction term.

# %% tags=["uses-answers"]
with skip_if_unanswered():
    mu_q, logvar_q = torch.randn(1, 8), torch.randn(1, 8)
    mu_p, logvar_p = torch.zeros(1, 8), torch.zeros(1, 8)
    exact = kl_diag_gaussians(mu_q, logvar_q, mu_p, logvar_p).item()
    print(f"closed form: {exact:.4f}")
    for S in (10, 100, 1_000, 10_000):
        # 20 independent estimates per S: their spread is the typical error of one estimate.
        runs = torch.cat([kl_monte_carlo(mu_q, logvar_q, mu_p, logvar_p, S, torch.Generator().manual_seed(seed))
                          for seed in range(20)])
        print(f"S = {S:6d}: mean of 20 estimates {runs.mean().item():8.4f}, spread (std) {runs.std().item():.4f}")
