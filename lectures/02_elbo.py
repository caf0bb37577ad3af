# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     notebook_metadata_filter: -jupytext.text_representation
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Lecture 2: The evidence lower bound (ELBO)
#
# A variational autoencoder (VAE) is trained by maximising one number, the *evidence lower
# bound*. This notebook derives it from two facts (Bayes' rule and "KL divergence is never
# negative"), works out the closed-form KL term that every VAE implementation uses, and
# checks every claim numerically on a model small enough that the exact answers are known.
#
# **What you will learn**
#
# - the derivation $\log p(x) = \text{ELBO} + \mathrm{KL}\big(q(z\mid x)\,\|\,p(z\mid x)\big)$,
#   one step at a time, and why it makes the ELBO a lower bound;
# - the closed-form KL divergence between diagonal Gaussians, derived, and the one line of
#   PyTorch it becomes, plus a caution about the direction of the KL in the lecture slides;
# - how a Monte-Carlo estimate of the KL converges to the closed form;
# - on a linear-Gaussian model with a known posterior: $\log p(x) \ge \text{ELBO}$, the gap
#   is exactly $\mathrm{KL}(q \,\|\, \text{posterior})$, and it closes when $q$ is the posterior;
# - the reparameterization trick, which lets gradients flow through sampling;
# - as a trained result: an encoder that learns the exact posterior by maximising the ELBO.

# %%
# %matplotlib inline
import math

import matplotlib.pyplot as plt
import torch
from torch.distributions import MultivariateNormal, Normal
from torch.distributions import kl_divergence as torch_kl

from dlstudio_lite import pick, quick_mode, recipe, seed_everything
from dlstudio_lite.claims import claim, summary
from dlstudio_lite.plot import interactive

seed_everything(0)
# Every tensor in this notebook is small: one CPU thread is faster than several, because
# handing tiny operations between threads costs more than it saves.
torch.set_num_threads(1)
print("quick mode:", quick_mode())

# %% [markdown]
# ## 1. The setting
#
# A latent-variable model explains an observation $x$ (an image) through an unobserved
# code $z$:
#
# - a **prior** $p(z)$, usually the standard normal $\mathcal{N}(0, I)$;
# - a **decoder** (generator) $p_\theta(x \mid z)$, a neural network with weights $\theta$.
#
# Two quantities we would like to have are out of reach for a neural decoder:
#
# - the **evidence** $p_\theta(x) = \int p_\theta(x \mid z)\, p(z)\, dz$, an integral over all codes;
# - the **posterior** $p_\theta(z \mid x) = p_\theta(x \mid z)\, p(z) / p_\theta(x)$, which needs the evidence.
#
# The VAE adds an **encoder** $q_\phi(z \mid x)$, a second network that proposes a distribution over
# codes for each $x$, an approximation of the posterior. The ELBO ties the three together.

# %% [markdown]
# ## 2. Deriving the ELBO
#
# **Step 1: measure how far the encoder is from the true posterior** with the
# Kullback-Leibler divergence (an expectation under $q$; we drop the subscripts $\theta, \phi$):
#
# $$
# \mathrm{KL}\big(q(z\mid x)\,\|\,p(z\mid x)\big)
#   = \mathbb{E}_{z\sim q(z\mid x)}\big[\log q(z\mid x) - \log p(z\mid x)\big].
# $$
#
# **Step 2: Bayes' rule in log form** replaces the unknown posterior by things the model has:
#
# $$
# \log p(z\mid x) = \log p(x\mid z) + \log p(z) - \log p(x).
# $$
#
# **Step 3: substitute.** $\log p(x)$ does not depend on $z$, so its expectation under $q$ is
# itself and it leaves the expectation:
#
# $$
# \mathrm{KL}\big(q(z\mid x)\,\|\,p(z\mid x)\big)
#   = \mathbb{E}_{q}\big[\log q(z\mid x) - \log p(z)\big] - \mathbb{E}_{q}\big[\log p(x\mid z)\big] + \log p(x).
# $$
#
# **Step 4: recognise a second KL.** The first expectation is the divergence of the encoder
# from the *prior*:
#
# $$
# \mathrm{KL}\big(q(z\mid x)\,\|\,p(z\mid x)\big)
#   = \mathrm{KL}\big(q(z\mid x)\,\|\,p(z)\big) - \mathbb{E}_{q}\big[\log p(x\mid z)\big] + \log p(x).
# $$
#
# **Step 5: solve for the evidence:**
#
# $$
# \log p(x) = \underbrace{\mathbb{E}_{q}\big[\log p(x\mid z)\big] - \mathrm{KL}\big(q(z\mid x)\,\|\,p(z)\big)}_{\text{ELBO}(x)}
#   \;+\; \mathrm{KL}\big(q(z\mid x)\,\|\,p(z\mid x)\big).
# $$
#
# **Step 6: drop the last term.** A KL divergence is never negative, so
#
# $$
# \log p(x) \;\ge\; \text{ELBO}(x), \qquad \log p(x) - \text{ELBO}(x) = \mathrm{KL}\big(q(z\mid x)\,\|\,p(z\mid x)\big).
# $$
#
# *Why is KL never negative?* $\log$ is concave, so by Jensen's inequality
# $-\mathrm{KL}(q\,\|\,p) = \mathbb{E}_q[\log (p/q)] \le \log \mathbb{E}_q[p/q] = \log \int p(z)\,dz = \log 1 = 0$,
# with equality only when $q = p$.
#
# What this buys:
#
# - The ELBO contains only things we can compute: the decoder's log-likelihood, averaged over
#   codes drawn from the encoder, and a KL between the encoder and the prior.
# - $\log p(x)$ does not depend on the encoder, so raising the ELBO by changing $q$ *must* shrink the
#   gap: it pulls $q(z\mid x)$ towards the true posterior.
# - Changing the decoder's weights $\theta$ is different: $\theta$ appears in *both* terms of step 5.
#   A step that raises the ELBO raises $\log p_\theta(x)$, or shrinks the gap by moving the true
#   posterior $p_\theta(z\mid x)$ towards $q$, or some of each. Nothing guarantees that the
#   evidence goes up; the ELBO can even rise while $\log p_\theta(x)$ falls, when the decoder
#   buys a smaller gap with a worse fit. What *is* guaranteed is a floor: the evidence is
#   never below the ELBO, so pushing the ELBO up pushes up the least the evidence can be.
#   One objective trains both networks, and the price of the shortcut is that a VAE's
#   decoder tends to favour models whose posterior is easy for $q$ to match.
# - The VAE loss is its negative, a **reconstruction** term plus a **KL** term (the lecture's Eq. 6):
#   $\mathcal{L} = -\mathbb{E}_q[\log p(x\mid z)] + \mathrm{KL}\big(q(z\mid x)\,\|\,p(z)\big)$.
#
# ### A second derivation: Jensen's inequality in one line
#
# The same bound also comes straight from the evidence, without naming the posterior. Multiply
# and divide inside the integral by $q(z\mid x)$, which turns the integral into an expectation
# under $q$, and move the logarithm inside it. Because $\log$ is concave, Jensen's inequality
# says $\log \mathbb{E}[Y] \ge \mathbb{E}[\log Y]$:
#
# $$
# \log p(x) = \log \int p(x\mid z)\,p(z)\,dz
#   = \log \mathbb{E}_{q}\!\left[\frac{p(x\mid z)\,p(z)}{q(z\mid x)}\right]
#   \;\ge\; \mathbb{E}_{q}\!\left[\log \frac{p(x\mid z)\,p(z)}{q(z\mid x)}\right]
#   = \mathbb{E}_{q}\big[\log p(x\mid z)\big] - \mathrm{KL}\big(q(z\mid x)\,\|\,p(z)\big).
# $$
#
# The right-hand side is the ELBO again. This route is shorter and shows at a glance why a
# *bound* appears (a log of an average against an average of logs), but it hides the size of
# the gap. The first route tells us exactly what is lost: the KL from $q$ to the true
# posterior. Jensen's inequality is an equality when the averaged quantity
# $p(x\mid z)p(z)/q(z\mid x)$ is the same for every $z$, i.e. when $q(z\mid x) \propto p(x\mid z)p(z)$:
# the posterior again. Section 5 checks both statements numerically. The sampled ELBO of
# section 5 (`elbo_sampled`) is exactly the average of the logarithm in the middle.
#
# ### Three slips in the slides
#
# The lecture's next slides turn this loss into code, and three of its equations contain
# mistakes worth recognising (details on the course's [errata page](../docs/ERRATA.md)):
#
# - **Eq. 8** calls $\mathbb{E}_q[\log p(x\mid z)]$ the reconstruction *loss*. It is a
#   log-likelihood, to be maximised; the loss term is its negative
#   ([errata E2](../docs/ERRATA.md#e2)).
# - **Eqs. 17 and 18** divide the squared error by $\sigma^d$. For a decoder
#   $\mathcal{N}(\hat{x}, \sigma^2 I)$ the exponent is $-\lVert x - \hat x\rVert^2 / (2\sigma^2)$; the power
#   $d$ belongs only to the normalising constant $(2\pi\sigma^2)^{-d/2}$
#   ([errata E3](../docs/ERRATA.md#e3)). The function `log_likelihood` in section 5 is the
#   correct form.
# - **Eq. 20** substitutes the input image $x_{in}$ for the decoder's mean $\mu_{x\mid z}$. The mean
#   is the decoder's *output* $\hat x(z)$; the $x$ being scored is the input. The right term is
#   $\lVert x - \hat x(z)\rVert^2$, which is also what the slide's code computes
#   ([errata E4](../docs/ERRATA.md#e4)).

# %% [markdown]
# ## 3. The KL term in closed form
#
# A VAE's encoder outputs, for each input, a mean $\mu$ and a log-variance $\log\sigma^2$ per latent
# dimension: $q(z\mid x) = \mathcal{N}\big(\mu, \operatorname{diag}(\sigma^2)\big)$. For two Gaussians the KL
# needs no sampling. Start in one dimension with $q = \mathcal{N}(\mu_1, \sigma_1^2)$ and
# $p = \mathcal{N}(\mu_2, \sigma_2^2)$:
#
# $$
# \log q(z) = -\tfrac12 \log(2\pi\sigma_1^2) - \frac{(z-\mu_1)^2}{2\sigma_1^2}, \qquad
# \log p(z) = -\tfrac12 \log(2\pi\sigma_2^2) - \frac{(z-\mu_2)^2}{2\sigma_2^2}.
# $$
#
# Subtract and take the expectation under $q$:
#
# $$
# \mathrm{KL}(q\,\|\,p) = \tfrac12 \log\frac{\sigma_2^2}{\sigma_1^2}
#   - \frac{\mathbb{E}_q[(z-\mu_1)^2]}{2\sigma_1^2} + \frac{\mathbb{E}_q[(z-\mu_2)^2]}{2\sigma_2^2}.
# $$
#
# The first expectation is the variance, $\sigma_1^2$. For the second write
# $z - \mu_2 = (z-\mu_1) + (\mu_1-\mu_2)$; the cross term has mean zero, so
# $\mathbb{E}_q[(z-\mu_2)^2] = \sigma_1^2 + (\mu_1-\mu_2)^2$. Hence
#
# $$
# \mathrm{KL}(q\,\|\,p) = \frac12\left[\log\frac{\sigma_2^2}{\sigma_1^2} + \frac{\sigma_1^2 + (\mu_1-\mu_2)^2}{\sigma_2^2} - 1\right].
# $$
#
# With diagonal covariances both densities are products over dimensions, their logs are sums,
# and so is the KL: **sum the one-dimensional formula over the latent dimensions**. For the
# standard normal prior ($\mu_2 = 0$, $\sigma_2 = 1$) it becomes
#
# $$
# \mathrm{KL}\big(\mathcal{N}(\mu, \operatorname{diag}\sigma^2)\,\|\,\mathcal{N}(0, I)\big)
#   = \frac12 \sum_j \big(\mu_j^2 + \sigma_j^2 - 1 - \log\sigma_j^2\big),
# $$
#
# which, with `logvar` $= \log\sigma^2$, is the familiar line
# `-0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())`.


# %%
def kl_diag(mu_q, logvar_q, mu_p, logvar_p):
    """KL(N(mu_q, diag e^logvar_q) || N(mu_p, diag e^logvar_p)), summed over the last axis.

    All arguments (..., D) -> (...). Works with logvar so that variances stay positive.
    """
    var_q, var_p = logvar_q.exp(), logvar_p.exp()
    return 0.5 * (logvar_p - logvar_q + (var_q + (mu_q - mu_p) ** 2) / var_p - 1).sum(-1)


# Check against PyTorch's own Gaussian KL on random parameters (a batch of 5, D = 3).
mu_q, mu_p = torch.randn(5, 3), torch.randn(5, 3)
lv_q, lv_p = torch.randn(5, 3), torch.randn(5, 3)
reference = torch_kl(Normal(mu_q, (0.5 * lv_q).exp()), Normal(mu_p, (0.5 * lv_p).exp())).sum(-1)
matches_torch = torch.allclose(kl_diag(mu_q, lv_q, mu_p, lv_p), reference, atol=1e-5)
print("matches torch.distributions:", matches_torch)
claim(matches_torch, "the closed-form KL matches torch.distributions", quick=True)

# %% [markdown]
# The package's `dlstudio_lite.vae.kl_divergence(mu, logvar)` is the standard-normal special case
# used by the VAE in lecture 4; it must agree.

# %%
from dlstudio_lite.vae import kl_divergence  # noqa: E402

zeros = torch.zeros(5, 3)
package_agrees = torch.allclose(kl_divergence(mu_q, lv_q), kl_diag(mu_q, lv_q, zeros, zeros), atol=1e-5)
print("package agrees:", package_agrees)
claim(package_agrees, "the package's kl_divergence agrees with the closed form", quick=True)

# %% [markdown]
# **A caution when reading the slides** ([errata E1](../docs/ERRATA.md#e1)). The lecture quotes
# the Gaussian KL (its Eq. 9) with the
# two distributions' roles exchanged: $\Sigma_q^{-1}\Sigma_p$ where $\Sigma_p^{-1}\Sigma_q$ belongs.
# Carried through to its Eq. 14, $-\tfrac12 + \tfrac12\log\sigma_q^2 + \frac{1 + \mu_q^2}{2\sigma_q^2}$,
# that is $\mathrm{KL}\big(p(z)\,\|\,q\big)$, the divergence in the *other* direction. The line of PyTorch
# on the same slide is the right one for $\mathrm{KL}(q\,\|\,p(z))$. KL is not symmetric, so the two
# differ; sampling decides which is which:

# %%
mu1, var1 = torch.tensor(1.0), torch.tensor(0.25)
q1, prior1 = Normal(mu1, var1.sqrt()), Normal(0.0, 1.0)
eq14 = -0.5 + 0.5 * var1.log() + (1 + mu1**2) / (2 * var1)
code_line = -0.5 * (1 + var1.log() - mu1**2 - var1)
zq, zp = q1.sample((200_000,)), prior1.sample((200_000,))
print(f"slide Eq. 14:                      {eq14:.3f}")
print(f"slide code line:                   {code_line:.3f}")
print(f"sampled KL(q || p) = E_q[log q/p]: {(q1.log_prob(zq) - prior1.log_prob(zq)).mean():.3f}")
print(f"sampled KL(p || q) = E_p[log p/q]: {(prior1.log_prob(zp) - q1.log_prob(zp)).mean():.3f}")
sampled_qp = (q1.log_prob(zq) - prior1.log_prob(zq)).mean()
sampled_pq = (prior1.log_prob(zp) - q1.log_prob(zp)).mean()
claim(abs(eq14 - sampled_pq) < 0.05 and abs(code_line - sampled_qp) < 0.05 and abs(eq14 - code_line) > 1,
      "Eq. 14 is KL(p(z) || q) and the code line is KL(q || p(z)): sampling tells them apart", quick=True,
      detail=f"Eq. 14 {eq14:.3f} vs {sampled_pq:.3f}, code {code_line:.3f} vs {sampled_qp:.3f}")

# %% [markdown]
# What the KL term does to an encoder: for one latent dimension, here is
# $\mathrm{KL}\big(\mathcal{N}(\mu,\sigma^2)\,\|\,\mathcal{N}(0,1)\big)$ over the encoder's two outputs. It is zero only at
# $\mu = 0, \sigma^2 = 1$ and grows in every direction, so it pulls every code distribution
# towards the prior; the reconstruction term pulls the other way, towards codes that
# identify their input.

# %%
mus = torch.linspace(-3, 3, 121)
logvars = torch.linspace(-4, 3, 141)
M, LV = torch.meshgrid(mus, logvars, indexing="xy")
kl_map = 0.5 * (M**2 + LV.exp() - 1 - LV)
fig, ax = plt.subplots(figsize=(5.5, 4))
cs = ax.contourf(mus, logvars, kl_map, levels=[0, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16], cmap="viridis")
ax.plot(0, 0, "w*", ms=14)
fig.colorbar(cs, ax=ax, label="KL to N(0, 1)  [nats]")
ax.set(xlabel=r"encoder mean $\mu$", ylabel=r"encoder log-variance $\log\sigma^2$",
       title="the KL term of the VAE loss, one dimension")
plt.show()

# %% [markdown]
# ## 4. Monte-Carlo KL against the closed form
#
# Without a closed form one can estimate $\mathrm{KL}(q\,\|\,p) = \mathbb{E}_q[\log q(z) - \log p(z)]$ by averaging
# $\log q(z_i) - \log p(z_i)$ over samples $z_i \sim q$. The average is unbiased and its error
# shrinks like $1/\sqrt{N}$. Below: a 4-dimensional example, several independent running
# estimates (left), and the root-mean-square error over many repeats (right).

# %%
D = 4
mu_q4, lv_q4 = torch.tensor([0.5, -1.0, 0.0, 2.0]), torch.tensor([-1.0, 0.5, 0.0, -0.5])
mu_p4, lv_p4 = torch.zeros(D), torch.tensor([0.0, 0.0, 1.0, 0.5])
q4, p4 = Normal(mu_q4, (0.5 * lv_q4).exp()), Normal(mu_p4, (0.5 * lv_p4).exp())
exact = kl_diag(mu_q4, lv_q4, mu_p4, lv_p4).item()

n_max, repeats = pick(normal=20_000, quick=4_000), pick(normal=100, quick=30)
z = q4.sample((repeats, n_max))                               # (R, N, D)
log_ratio = (q4.log_prob(z) - p4.log_prob(z)).sum(-1)         # (R, N)
running = log_ratio.cumsum(1) / torch.arange(1, n_max + 1)    # estimate after n samples
ns = torch.arange(1, n_max + 1)
rmse = (running - exact).pow(2).mean(0).sqrt()

fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
for r in range(6):
    axes[0].plot(ns, running[r], lw=1)
axes[0].axhline(exact, color="k", ls="--", label=f"closed form = {exact:.3f}")
axes[0].set(xscale="log", xlabel="number of samples N", ylabel="KL estimate [nats]",
            title="running Monte-Carlo estimates", ylim=(exact - 2, exact + 2))
axes[0].legend()
axes[1].plot(ns, rmse, label="RMS error over repeats")
axes[1].plot(ns, log_ratio.std() / ns.sqrt(), "k--", lw=1, label=r"std$/\sqrt{N}$")
axes[1].set(xscale="log", yscale="log", xlabel="number of samples N", ylabel="error [nats]",
            title="error falls like 1/sqrt(N)")
axes[1].legend()
plt.tight_layout()
plt.show()
predicted = log_ratio.std() / ns.sqrt()
claim(((rmse[9:] / predicted[9:]).log().abs() < math.log(1.5)).all(),
      "the RMS error falls like 1/sqrt(N) (within a factor 1.5 of std/sqrt(N) from N = 10 on)")

# %% [markdown]
# The closed form gives the exact value at no cost and with no noise, which is why VAEs use
# it for the KL term; only the reconstruction term needs samples.
#
# ## 5. Checking the bound on a model with known answers
#
# For a neural decoder neither $\log p(x)$ nor the posterior can be computed, so the identity
# of section 2 cannot be checked there. A **linear-Gaussian** model has both in closed form.
# It has a name: **probabilistic PCA** (Tipping and Bishop, 1999). Its maximum-likelihood
# $W$ spans the leading principal components of the data, and it is the VAE whose
# decoder is a single linear layer with fixed noise:
#
# $$
# z \sim \mathcal{N}(0, I_d), \qquad x = W z + b + \varepsilon, \quad \varepsilon \sim \mathcal{N}(0, s^2 I_n).
# $$
#
# - **Evidence.** $x$ is a linear function of Gaussians, hence Gaussian with mean $b$ and
#   covariance $WW^\top + s^2 I$: $\;p(x) = \mathcal{N}(x;\, b,\, WW^\top + s^2 I)$.
# - **Posterior.** Up to terms without $z$,
#   $\log p(z\mid x) = -\frac{1}{2s^2}\lVert x - b - Wz\rVert^2 - \tfrac12\lVert z\rVert^2
#   = -\tfrac12 z^\top \Lambda z + z^\top W^\top (x-b)/s^2 + \text{const}$ with
#   $\Lambda = I + W^\top W/s^2$. A quadratic in $z$ is a Gaussian: precision $\Lambda$,
#   covariance $S = \Lambda^{-1}$, mean $m = S\, W^\top (x-b)/s^2$.
# - **ELBO** for $q = \mathcal{N}(\mu, \operatorname{diag} v)$. Using
#   $\mathbb{E}_q\lVert x - b - Wz\rVert^2 = \lVert x - b - W\mu\rVert^2 + \sum_j v_j \lVert w_j\rVert^2$
#   ($w_j$ the columns of $W$):
#   $\;\text{ELBO} = -\frac n2 \log(2\pi s^2) - \frac{\lVert x-b-W\mu\rVert^2 + \sum_j v_j\lVert w_j\rVert^2}{2s^2}
#   - \mathrm{KL}\big(q\,\|\,\mathcal{N}(0, I)\big)$.
#
# We give $W$ orthogonal columns, so $W^\top W$ and hence the posterior covariance are
# diagonal: then a VAE-style diagonal $q$ *can* equal the posterior. (Section 5.3 drops that.)

# %%
d, n, s = 2, 5, 0.5
Q, _ = torch.linalg.qr(torch.randn(n, n))
W = Q[:, :d] * torch.tensor([2.0, 0.7])        # orthogonal columns of lengths 2 and 0.7
b = torch.randn(n)


def sample_x(num):
    """Draw num observations from the model: (num, n)."""
    return torch.randn(num, d) @ W.T + b + s * torch.randn(num, n)


def log_evidence(x):
    """Exact log p(x): (..., n) -> (...)."""
    return MultivariateNormal(b, W @ W.T + s**2 * torch.eye(n)).log_prob(x)


def true_posterior(x):
    """Exact p(z | x) = N(m, S): x (..., n) -> m (..., d), S (d, d)."""
    S = torch.linalg.inv(torch.eye(d) + W.T @ W / s**2)
    return (x - b) @ W @ S / s**2, S


def elbo_exact(x, mu, logvar):
    """Closed-form ELBO for q = N(mu, diag e^logvar): x (..., n), mu/logvar (..., d) -> (...)."""
    resid = x - b - mu @ W.T
    spread = (logvar.exp() * (W**2).sum(0)).sum(-1)       # sum_j v_j ||w_j||^2
    exp_loglik = -0.5 * n * math.log(2 * math.pi * s**2) - ((resid**2).sum(-1) + spread) / (2 * s**2)
    return exp_loglik - kl_diag(mu, logvar, torch.zeros_like(mu), torch.zeros_like(logvar))


def log_likelihood(x, z):
    """Decoder log-density log N(x; Wz + b, s^2 I): x (..., n), z (..., d) -> (...).

    Up to a constant it is minus the squared reconstruction error over 2 s^2: the reason
    a VAE with a Gaussian decoder is trained with an MSE term.
    """
    sq_err = (x - z @ W.T - b).pow(2).sum(-1)
    return -0.5 * n * math.log(2 * math.pi * s**2) - sq_err / (2 * s**2)


def elbo_sampled(x, mu, logvar, num_samples):
    """Monte-Carlo ELBO, E_q[log p(x|z) + log p(z) - log q(z)], from num_samples draws."""
    q = Normal(mu, (0.5 * logvar).exp())
    z = q.sample((num_samples,))
    log_joint = log_likelihood(x, z) + Normal(0.0, 1.0).log_prob(z).sum(-1)
    terms = log_joint - q.log_prob(z).sum(-1)
    return terms.mean(), terms.std() / num_samples**0.5


x_obs = sample_x(1)[0]
m_post, S_post = true_posterior(x_obs)
print("posterior variances:", S_post.diagonal().tolist(),
      f"| largest off-diagonal entry: {(S_post - torch.diag(S_post.diagonal())).abs().max():.0e}")

# %% [markdown]
# ### 5.1 The gap closes as $q$ moves onto the posterior
#
# Start from a poor guess $q_0$ and slide towards the posterior: with $t \in [0, 1]$, interpolate
# the means linearly and the log-variances linearly, so $q_1$ *is* the posterior. For each $t$ we
# compute three things independently: the closed-form ELBO, a sampled ELBO (dots with error
# bars), and $\mathrm{KL}(q_t\,\|\,p(z\mid x))$ from `torch.distributions`.

# %%
mu0, lv0 = torch.tensor([-1.5, 1.0]), torch.tensor([1.0, -2.0])
lv_post = S_post.diagonal().log()
ts = torch.linspace(0, 1, 41)[:, None]
mu_t, lv_t = (1 - ts) * mu0 + ts * m_post, (1 - ts) * lv0 + ts * lv_post

log_px = log_evidence(x_obs).item()
elbo_t = elbo_exact(x_obs, mu_t, lv_t)
gap_t = log_px - elbo_t
kl_to_post = torch_kl(Normal(mu_t, (0.5 * lv_t).exp()), Normal(m_post, S_post.diagonal().sqrt())).sum(-1)

t_mc = list(range(0, 41, 8))
mc = [elbo_sampled(x_obs, mu_t[i], lv_t[i], pick(normal=20_000, quick=4_000)) for i in t_mc]

fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
axes[0].axhline(log_px, color="k", ls="--", label=r"$\log p(x)$ (exact)")
axes[0].plot(ts, elbo_t, label="ELBO (closed form)")
axes[0].errorbar(ts[t_mc, 0], [m.item() for m, _ in mc], yerr=[2 * e.item() for _, e in mc],
                 fmt="o", capsize=3, label="ELBO (sampled, ±2 s.e.)")
axes[0].set(xlabel="t   (0: poor guess, 1: true posterior)", ylabel="nats", title="the bound from below")
axes[0].legend()
axes[1].plot(ts, gap_t, lw=4, alpha=0.4, label=r"$\log p(x) - $ELBO")
axes[1].plot(ts, kl_to_post, "k:", lw=2, label=r"KL$(q_t \,\|\, p(z\mid x))$")
axes[1].set(xlabel="t", ylabel="nats", title="the gap is the KL to the posterior", ylim=(0, None))
axes[1].legend()
plt.tight_layout()
plt.show()
print(f"largest |gap - KL| over t: {(gap_t - kl_to_post).abs().max():.1e} nats;  "
      f"gap at t = 1: {gap_t[-1].item():.1e} nats")
claim((gap_t - kl_to_post).abs().max() < 1e-3 and abs(gap_t[-1].item()) < 1e-4,
      "the gap is the KL to the posterior, and it closes at t = 1", quick=True)
claim(all(abs(m.item() - elbo_exact(x_obs, mu_t[i], lv_t[i]).item()) < 4 * e.item() + 1e-3
          for (m, e), i in zip(mc, t_mc)), "the sampled ELBO agrees with the closed form (within its error bars)")

# %% [markdown]
# ### 5.2 No $q$ beats the evidence
#
# The bound must hold for *every* $q$, not only along one path. Throw a thousand random
# Gaussians at it:

# %%
rand_mu, rand_lv = 3 * torch.randn(1000, d), 2 * torch.randn(1000, d)
gaps = log_px - elbo_exact(x_obs, rand_mu, rand_lv)
print(f"smallest gap among 1,000 random q: {gaps.min():.3f} nats (never below 0)")
claim(gaps.min() >= 0, "no random q gives a gap below 0", quick=True)

# %% [markdown]
# ### 5.3 When a diagonal $q$ cannot reach the posterior
#
# With a general $W$ the posterior is correlated, but a VAE's encoder only outputs a diagonal
# Gaussian. The best diagonal $q$ then keeps a gap. For a Gaussian target with mean $m$ and
# precision $\Lambda$, the KL from $q = \mathcal{N}(\mu, \operatorname{diag} v)$ is, up to constants,
# $\tfrac12\big[\sum_j \Lambda_{jj} v_j - \sum_j \log v_j + (\mu - m)^\top\Lambda(\mu - m)\big]$; setting the
# derivatives to zero gives $\mu = m$ and $v_j = 1/\Lambda_{jj}$: the right centre, but too
# narrow along the correlated direction.

# %%
W_c = torch.randn(n, d)                               # columns no longer orthogonal
Lam_c = torch.eye(d) + W_c.T @ W_c / s**2
S_c = torch.linalg.inv(Lam_c)
m_c = S_c @ W_c.T @ (W_c @ torch.randn(d) + s * torch.randn(n)) / s**2   # posterior mean for one x
posterior_c = MultivariateNormal(m_c, S_c)
best_diag = MultivariateNormal(m_c, torch.diag(1 / Lam_c.diagonal()))
print(f"gap left by the best diagonal q: {torch_kl(best_diag, posterior_c).item():.3f} nats")
claim(torch_kl(best_diag, posterior_c).item() > 1e-3, "the best diagonal q keeps a gap", quick=True)
claim((best_diag.covariance_matrix.diagonal() < S_c.diagonal()).all(),
      "the best diagonal q is too narrow along the correlated direction", quick=True)

g = torch.linspace(-1, 1, 200)
G1, G2 = torch.meshgrid(g + m_c[0], g + m_c[1], indexing="xy")
grid = torch.stack([G1, G2], -1)
fig, ax = plt.subplots(figsize=(4.5, 4.5))
styles = [(posterior_c, dict(colors="k", linestyles="solid")),
          (best_diag, dict(colors="tab:orange", linestyles="dashed"))]
for dist, style in styles:
    # The 1- and 2-standard-deviation ellipses: log-density 1/2 and 2 below the peak.
    peak = dist.log_prob(dist.mean).item()
    ax.contour(G1, G2, dist.log_prob(grid), levels=[peak - 2.0, peak - 0.5], **style)
ax.set(title="posterior (black) vs best diagonal q (orange)\n1 and 2 standard deviations",
       xlabel="$z_1$", ylabel="$z_2$", aspect="equal")
plt.show()

# %% [markdown]
# This *approximation gap* is one reason a VAE's ELBO stays below the true log-likelihood
# even after perfect training of its encoder.
#
# ## 6. The reparameterization trick (preview)
#
# To train the encoder we need gradients of $\mathbb{E}_{z\sim q_\phi}[f(z)]$ with respect to $\mu$ and
# $\sigma$, but "draw $z$ from $\mathcal{N}(\mu, \sigma^2)$" is not a differentiable operation: the
# sample has no formula in $\mu$ and $\sigma$. The trick is to give it one. Draw the randomness
# from a fixed distribution and shift and scale it:
#
# $$
# \varepsilon \sim \mathcal{N}(0, I), \qquad z = \mu + \sigma \odot \varepsilon
# \quad\Longrightarrow\quad
# \nabla_{\mu,\sigma}\, \mathbb{E}_{q}[f(z)] = \mathbb{E}_{\varepsilon}\big[\nabla_{\mu,\sigma} f(\mu + \sigma\odot\varepsilon)\big].
# $$
#
# The expectation no longer depends on the parameters, so the gradient moves inside, and
# autograd handles $f(\mu + \sigma\varepsilon)$ like any other function. A check with
# $f(z) = z^2$, where $\mathbb{E}_q[z^2] = \mu^2 + \sigma^2$, so $\partial/\partial\mu = 2\mu$ and
# $\partial/\partial \log\sigma^2 = \sigma^2$:

# %%
mu = torch.tensor(1.5, requires_grad=True)
logvar = torch.tensor(-0.5, requires_grad=True)
eps = torch.randn(pick(normal=200_000, quick=50_000))
z = mu + torch.exp(0.5 * logvar) * eps          # the reparameterized sample
(z**2).mean().backward()
print(f"d/dmu:     sampled {mu.grad.item():.3f}   exact {2 * mu.item():.3f}")
print(f"d/dlogvar: sampled {logvar.grad.item():.3f}   exact {math.exp(logvar.item()):.3f}")

# torch.distributions offers both: .sample() cuts the graph, .rsample() reparameterizes.
dist = Normal(mu, torch.exp(0.5 * logvar))
print("sample() carries a gradient:", dist.sample().requires_grad,
      "| rsample() carries a gradient:", dist.rsample().requires_grad)
claim(abs(mu.grad.item() - 2 * mu.item()) < 0.05 and abs(logvar.grad.item() - math.exp(logvar.item())) < 0.05,
      "the reparameterized gradients match the exact ones", quick=True)

# %% [markdown]
# The package's `dlstudio_lite.vae.reparameterize(mu, logvar)` is the same one line; lecture 4
# uses it inside the VAE.
#
# ## 7. Explore: two Gaussians and the KL between them
#
# Move the means and standard deviations. Watch the asymmetry: when $q$ is narrow and sits
# inside $p$, $\mathrm{KL}(q\,\|\,p)$ stays moderate while $\mathrm{KL}(p\,\|\,q)$ is large, because $p$ puts
# mass where $q$ has almost none. (In quick mode, or where widgets cannot render, the figure
# is drawn once with the defaults.)


# %%
def show_two_gaussians(mu_q=1.0, sigma_q=0.6, mu_p=0.0, sigma_p=1.0):
    zs = torch.linspace(-6, 6, 600)
    q, p = Normal(mu_q, sigma_q), Normal(mu_p, sigma_p)
    kl_qp = torch_kl(q, p).item()
    kl_pq = torch_kl(p, q).item()
    fig, ax = plt.subplots(figsize=(7, 3.3))
    ax.fill_between(zs, q.log_prob(zs).exp(), alpha=0.4, label=f"q = N({mu_q:.1f}, {sigma_q:.1f}²)")
    ax.fill_between(zs, p.log_prob(zs).exp(), alpha=0.4, label=f"p = N({mu_p:.1f}, {sigma_p:.1f}²)")
    ax.set(xlabel="z", ylabel="density",
           title=f"KL(q || p) = {kl_qp:.3f} nats     KL(p || q) = {kl_pq:.3f} nats")
    ax.legend(loc="upper left")
    plt.show()


interactive(show_two_gaussians, mu_q=(-3.0, 3.0, 0.1, 1.0), sigma_q=(0.2, 3.0, 0.1, 0.6),
            mu_p=(-3.0, 3.0, 0.1, 0.0), sigma_p=(0.2, 3.0, 0.1, 1.0))

# %%
# The defaults: q = N(1, 0.6^2) narrow and inside p = N(0, 1).
kl_qp_default = torch_kl(Normal(1.0, 0.6), Normal(0.0, 1.0)).item()
kl_pq_default = torch_kl(Normal(0.0, 1.0), Normal(1.0, 0.6)).item()
claim(kl_pq_default > 2 * kl_qp_default, "when q is narrow and sits inside p, KL(q || p) stays moderate "
      "while KL(p || q) is large", quick=True, detail=f"{kl_qp_default:.2f} vs {kl_pq_default:.2f}")

# %% [markdown]
# ## 8. Trained result: an encoder that learns the posterior
#
# Everything comes together in a miniature VAE with the decoder held fixed: the
# linear-Gaussian model of section 5 plays the decoder, and a linear **encoder**
# $x \mapsto (\mu, \log\sigma^2)$ is trained on samples of $x$ by gradient ascent on the ELBO,
# exactly as a VAE's encoder is:
#
# - reconstruction term: one reparameterized sample $z = \mu + \sigma\odot\varepsilon$ per input,
#   scored by $\log p(x \mid z)$;
# - KL term: the closed form of section 3.
#
# Theory says where it should end up. The true posterior mean $m(x) = S W^\top (x - b)/s^2$ is
# linear in $x$ and the posterior variance is the same for every $x$, so a linear encoder can
# represent the posterior exactly, and maximising the ELBO should find it: the average gap
# $\log p(x) - \text{ELBO}$ should go to zero.

# %%
# The run's data size, steps, batch and step size: the recipe amortised_elbo_toy
# (dlstudio_lite/recipes.py; quick mode runs its quick variant).
TOY = recipe("amortised_elbo_toy")
seed_everything(0)
x_train, x_val = sample_x(TOY.data["num_images"]), sample_x(512)
encoder = torch.nn.Linear(n, 2 * d)              # outputs [mu, logvar]
steps, batch = TOY.train["steps"], TOY.train["batch_size"]
optimizer = torch.optim.Adam(encoder.parameters(), lr=TOY.train["lr"])
# Decaying the step size averages out the noise of the one-sample gradient at the end.
scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
mean_log_px = log_evidence(x_val).mean().item()
history = []
for step in range(steps + 1):
    if step % 10 == 0:                            # exact validation ELBO, no sampling noise
        with torch.no_grad():
            mu_v, lv_v = encoder(x_val).chunk(2, dim=-1)
            history.append((step, elbo_exact(x_val, mu_v, lv_v).mean().item()))
    xb = x_train[torch.randint(0, len(x_train), (batch,))]
    mu_b, lv_b = encoder(xb).chunk(2, dim=-1)
    z_b = mu_b + torch.exp(0.5 * lv_b) * torch.randn_like(mu_b)       # reparameterization
    recon = log_likelihood(xb, z_b)                                    # log p(x | z)
    kl = kl_diag(mu_b, lv_b, torch.zeros_like(mu_b), torch.zeros_like(lv_b))
    loss = (kl - recon).mean()                                         # = -ELBO
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    scheduler.step()

# %%
with torch.no_grad():
    mu_v, lv_v = encoder(x_val).chunk(2, dim=-1)
m_v, S_v = true_posterior(x_val)
final_gap = mean_log_px - elbo_exact(x_val, mu_v, lv_v).mean().item()

fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
steps_logged, elbos = map(torch.tensor, zip(*history))
axes[0].plot(steps_logged, elbos, label="validation ELBO (exact)")
axes[0].axhline(mean_log_px, color="k", ls="--", label=r"mean $\log p(x)$")
axes[0].set(xlabel="training step", ylabel="nats per example", title="maximising the ELBO",
            ylim=(mean_log_px - 15, mean_log_px + 2))
axes[0].legend()
axes[1].plot(steps_logged, mean_log_px - elbos)
axes[1].set(yscale="log", xlabel="training step", ylabel="nats per example",
            title=r"gap $\log p(x) - $ELBO $=$ KL to the posterior")
# Two latent dimensions, each on its own axis pair: side by side instead of on top of each
# other, so that neither cloud of points hides the other.
lim = m_v.abs().max().item() * 1.1
for j, colour in enumerate(["tab:blue", "tab:orange"]):
    offset = j * 2.4 * lim                 # shift the second panel to the right
    axes[2].scatter(m_v[:, j] + offset, mu_v[:, j], s=6, alpha=0.5, color=colour,
                    label=f"$z_{j + 1}$ (posterior sd {S_v[j, j].sqrt():.2f})")
    axes[2].plot([offset - lim, offset + lim], [-lim, lim], "k--", lw=1, zorder=3)
axes[2].set_xticks([0, 2.4 * lim], ["$z_1$: true mean", "$z_2$: true mean"])
axes[2].set(ylabel="encoder mean", title="encoder vs exact posterior (dashed: equal)")
axes[2].legend(fontsize=8, loc="lower right")
plt.tight_layout()
plt.show()
print(f"average gap log p(x) - ELBO after training: {final_gap:.4f} nats")
print("posterior variances, true:   ", [round(v, 4) for v in S_v.diagonal().tolist()])
print("posterior variances, encoder:", [round(v, 4) for v in lv_v.exp().mean(0).tolist()])
mean_error = ((mu_v - m_v).abs().max() / m_v.abs().max()).item()
variance_error = (lv_v.exp().mean(0) / S_v.diagonal() - 1).abs().max().item()
claim(mean_error < 0.05, "the encoder's means line up with the exact posterior means",
      detail=f"largest error {mean_error:.1%} of the largest mean")
claim(variance_error < 0.05, "the encoder's variances line up with the exact posterior variances",
      detail=f"largest relative error {variance_error:.1%}")
claim(0 <= final_gap < 0.01, "the remaining gap (the KL to the posterior) is close to zero",
      detail=f"{final_gap:.4f} nats")

# %% [markdown]
# The encoder never saw a posterior: it only maximised the ELBO, yet its means line up
# with the exact posterior means and its variances with the exact posterior variances,
# and the remaining gap (the KL to the posterior) is close to zero. In a real VAE the
# decoder is a network and is trained at the same time, and the posterior is not Gaussian,
# so the gap does not vanish; but the mechanics are exactly these.
#
# ## Summary
#
# - From Bayes' rule and $\mathrm{KL} \ge 0$:
#   $\log p(x) = \text{ELBO} + \mathrm{KL}\big(q(z\mid x)\,\|\,p(z\mid x)\big) \ge \text{ELBO}$, with
#   $\text{ELBO} = \mathbb{E}_q[\log p(x\mid z)] - \mathrm{KL}\big(q(z\mid x)\,\|\,p(z)\big)$.
# - The gap is exactly the encoder's KL to the true posterior; we checked this to rounding
#   error on a model where everything is known, and saw it close when $q$ reaches the posterior.
# - For diagonal Gaussians the KL term has a closed form,
#   $\tfrac12\sum_j(\mu_j^2 + \sigma_j^2 - 1 - \log\sigma_j^2)$ against $\mathcal{N}(0, I)$. Mind its
#   direction: the slides' Eq. 14 is the reverse KL; their code line is right.
# - Sampled estimates converge like $1/\sqrt{N}$, so use the closed form where there is one.
# - The reparameterization $z = \mu + \sigma\odot\varepsilon$ makes sampling differentiable;
#   with it, maximising the ELBO trained an encoder onto the exact posterior.
# - The linear-Gaussian model is probabilistic PCA: the simplest VAE, and one where every
#   quantity can be checked exactly.
#
# ## Questions to think about
#
# 1. Both derivations of section 2 give the same bound. Which one would you use to explain
#    *why* a better encoder gives a tighter bound, and which to explain why there is a
#    bound at all?
# 2. The trained encoder of section 8 reached the exact posterior because the model was
#    linear-Gaussian. Name one change to the model (decoder, prior or noise) after which a
#    linear Gaussian encoder could no longer reach it. What would the gap curve then do?
# 3. $\mathrm{KL}(q\,\|\,p)$ and $\mathrm{KL}(p\,\|\,q)$ differ (section 7). When $q$ is too narrow
#    for the posterior, which of the two stays moderate, and what does that say about the
#    kind of mistake a VAE's encoder tends to make?
# 4. In section 5.3 the best diagonal $q$ had the right centre but was too narrow. Why too
#    narrow rather than too wide?
#
# **Next:** [exercise 2](../exercises/ex02_elbo.ipynb) (the ELBO exercise) has you implement the Gaussian KL
# in closed form and a Monte-Carlo estimate of it, and compare the two. Lecture 3 builds
# the plain autoencoder that the VAE extends.

# %%
print(summary())
