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
# # Lecture 4: The variational autoencoder (VAE)
#
# The autoencoder of lecture 3 reconstructs well but cannot generate: its latents form an
# irregular set, and a random latent decodes to texture. A VAE changes two things. The
# encoder no longer outputs a latent but a Gaussian distribution over latents,
# $q(z \mid x) = \mathcal N(\mu(x), \operatorname{diag} \sigma^2(x))$; and the loss pulls
# those Gaussians towards a fixed prior $p(z) = \mathcal N(0, I)$, the distribution we will
# later sample from. Lecture 2 derived the loss (the negative ELBO); this lecture turns it
# into code and looks at what it does.
#
# **What you will learn**
#
# - why drawing $z \sim q(z \mid x)$ blocks the gradient, and how the reparameterization
#   $z = \mu + \sigma \varepsilon$ lets it through (checked with autograd);
# - the loss, reconstruction $+\ \beta \cdot$ KL, and why summing or averaging its terms
#   silently changes the effective $\beta$;
# - training the package's `VAE`, and how reconstruction and KL trade off as $\beta$ grows;
# - sampling new images from $\mathcal N(0, I)$ (and a bug in the lecture's code that samples
#   from the wrong distribution), and interpolating between two images in latent space;
# - *posterior collapse*: what a too-large $\beta$ does to the latent and to the reconstructions.

# %%
# %matplotlib inline
import math

import matplotlib.pyplot as plt
import torch
from torch.distributions import Normal

from dlstudio_lite import (CHECKPOINTS, VAE, CheckpointError, ShapesDataset, bits_per_dim, kl_divergence,
                           load_model, load_or_train, pick, psnr, quick_mode, recipe, reparameterize,
                           seed_everything)
from dlstudio_lite.claims import claim, say, summary
from dlstudio_lite.plot import input_output_pairs, plot_history, show_images, show_side_by_side

seed_everything(0)
print("quick mode:", quick_mode())

# %% [markdown]
# ## 1. Sampling is not differentiable; reparameterization is
#
# Training needs $\partial \mathcal L / \partial \mu$ and $\partial \mathcal L / \partial \log\sigma^2$,
# where the loss depends on a sample $z \sim \mathcal N(\mu, \sigma^2)$. A sampler returns a
# number; it has no derivative with respect to the parameters it was called with. PyTorch
# agrees: a value drawn with `Normal(mu, sigma).sample()` is cut off from the graph.

# %%
mu = torch.tensor([0.5, -1.0], requires_grad=True)
logvar = torch.tensor([0.0, 0.4], requires_grad=True)   # the encoder predicts log sigma^2
sigma = torch.exp(0.5 * logvar)

z = Normal(mu, sigma).sample()
print("z =", z, "| requires_grad:", z.requires_grad, "| grad_fn:", z.grad_fn)
try:
    (z ** 2).sum().backward()
except RuntimeError as err:
    print("backward() fails:", err)

# %% [markdown]
# The fix is to move the randomness *outside* the parameters. Draw
# $\varepsilon \sim \mathcal N(0, I)$, which depends on nothing we learn, and build
#
# $$ z = \mu + \sigma \odot \varepsilon, \qquad \sigma = \exp\!\big(\tfrac12 \log \sigma^2\big). $$
#
# This $z$ has exactly the distribution $\mathcal N(\mu, \sigma^2)$, and it is an ordinary
# differentiable function of $\mu$ and $\log\sigma^2$ (with $\varepsilon$ a constant):
#
# $$ \frac{\partial z}{\partial \mu} = 1, \qquad
#    \frac{\partial z}{\partial \log\sigma^2} = \tfrac12\, \sigma\, \varepsilon . $$
#
# For the toy loss $\mathcal L = \sum z^2$ the chain rule gives
# $\partial \mathcal L / \partial \mu = 2z$ and $\partial \mathcal L / \partial \log\sigma^2 = z \sigma \varepsilon$.
# Autograd should reproduce both, and the package's `reparameterize` should give the same $z$
# for the same random numbers.

# %%
torch.manual_seed(1)
eps = torch.randn(2)
z = mu + torch.exp(0.5 * logvar) * eps
(z ** 2).sum().backward()
print("grad mu:    ", mu.grad, "expected", (2 * z).detach())
print("grad logvar:", logvar.grad, "expected", (z * sigma * eps).detach())

torch.manual_seed(1)
same_z = torch.allclose(reparameterize(mu, logvar), z)
print("package reparameterize gives the same z:", same_z)
claim(torch.allclose(mu.grad, 2 * z.detach()) and torch.allclose(logvar.grad, (z * sigma * eps).detach())
      and same_z, "autograd reproduces both derivatives, and reparameterize gives the same z", quick=True)

# %% [markdown]
# `torch.distributions` knows the trick too: `rsample()` ("reparameterized sample") builds
# $\mu + \sigma\varepsilon$ for you, while `sample()` does not.

# %%
for method in ("sample", "rsample"):
    mu.grad = logvar.grad = None
    z = getattr(Normal(mu, torch.exp(0.5 * logvar)), method)()
    if z.requires_grad:
        (z ** 2).sum().backward()
    print(f"{method:>8}(): grad reaches mu: {mu.grad is not None}, logvar: {logvar.grad is not None}")

# %% [markdown]
# One sample gives a noisy gradient, but an **unbiased** one: averaged over many $\varepsilon$
# it equals the gradient of the expected loss. For $\mathcal L = z^2$,
# $\mathbb E[z^2] = \mu^2 + \sigma^2$, so $\partial / \partial\mu = 2\mu$ and
# $\partial / \partial \log\sigma^2 = \sigma^2$.

# %%
mu.grad = logvar.grad = None
eps = torch.randn(pick(normal=200_000, quick=50_000), 2)
z = mu + torch.exp(0.5 * logvar) * eps                    # many samples at once
(z ** 2).mean(0).sum().backward()
print("Monte-Carlo grad mu:    ", mu.grad, " exact:", (2 * mu).detach())
print("Monte-Carlo grad logvar:", logvar.grad, " exact:", logvar.exp().detach())
claim(torch.allclose(mu.grad, 2 * mu.detach(), atol=0.03) and torch.allclose(logvar.grad, logvar.exp().detach(), atol=0.03),
      "averaged over many samples the gradient equals the gradient of the expected loss", quick=True)

# %% [markdown]
# ## 2. The loss: reconstruction + $\beta$ KL
#
# The negative ELBO of lecture 2, for one image $x$, is
#
# $$ \mathcal L(x) = \underbrace{-\mathbb E_{q(z\mid x)}\big[\log p(x \mid z)\big]}_{\text{reconstruction}}
#    + \underbrace{\mathrm{KL}\big(q(z \mid x)\,\|\,p(z)\big)}_{\text{stay close to the prior}} .$$
#
# **Reconstruction.** With a Gaussian decoder $p(x \mid z) = \mathcal N(\hat x(z), s^2 I)$,
# $-\log p(x \mid z) = \frac{1}{2s^2} \sum_i (x_i - \hat x_i)^2 + \text{const}$: a *summed* squared
# error, and $s^2 = \tfrac12$ makes the factor one. One sample of $z$ per image (drawn with the
# trick above) estimates the expectation.
#
# **KL, step by step**, for one latent dimension with $q = \mathcal N(\mu, \sigma^2)$ and
# $p = \mathcal N(0, 1)$:
#
# $$ \log q(z) - \log p(z) = -\tfrac12 \log \sigma^2 - \frac{(z-\mu)^2}{2\sigma^2} + \frac{z^2}{2}
#    \quad (\text{the } \log 2\pi \text{ terms cancel}). $$
#
# Take the expectation under $q$, using $\mathbb E_q[(z-\mu)^2] = \sigma^2$ and
# $\mathbb E_q[z^2] = \mu^2 + \sigma^2$:
#
# $$ \mathrm{KL} = -\tfrac12 \log\sigma^2 - \tfrac12 + \tfrac12(\mu^2 + \sigma^2)
#    = \tfrac12\big(\mu^2 + \sigma^2 - 1 - \log \sigma^2\big). $$
#
# It is zero exactly when $\mu = 0$ and $\sigma = 1$. With a diagonal Gaussian the KL of the
# whole latent is the sum over its dimensions. Checked against `torch.distributions`:

# %%
m, lv = torch.randn(4, 6), torch.randn(4, 6)
closed_form = 0.5 * (m ** 2 + lv.exp() - 1 - lv).sum(1)
library = torch.distributions.kl_divergence(Normal(m, (0.5 * lv).exp()), Normal(0.0, 1.0)).sum(1)
print("closed form == torch.distributions:", torch.allclose(closed_form, library, atol=1e-5))
print("closed form == dlstudio_lite.kl_divergence:", torch.allclose(closed_form, kl_divergence(m, lv)))
claim(torch.allclose(closed_form, library, atol=1e-5) and torch.allclose(closed_form, kl_divergence(m, lv)),
      "the closed-form KL agrees with torch.distributions and the package", quick=True)

# %% [markdown]
# **$\beta$.** The lecture (like the $\beta$-VAE paper) weights the KL term:
# $\mathcal L_\beta = \text{recon} + \beta\, \mathrm{KL}$. $\beta = 1$ is the ELBO;
# smaller $\beta$ favours sharp reconstructions, larger $\beta$ a latent closer to the prior.
#
# **$\beta$ and the decoder's variance are the same knob.** With a decoder variance $s^2$ the
# exact negative ELBO is, up to a constant, $\text{SE}/(2s^2) + \mathrm{KL}$, where SE is the
# summed squared error. Take the lecture's loss, $\text{SE} + 0.1\,\mathrm{KL}$, and multiply it
# by 10 (a constant factor moves the minimum nowhere):
#
# $$ 10\,\big(\text{SE} + 0.1\,\mathrm{KL}\big) = 10\,\text{SE} + \mathrm{KL}
#    = \frac{\text{SE}}{2 \cdot 0.05} + \mathrm{KL}. $$
#
# So $\beta = 0.1$ with a summed squared error *is* the plain ELBO ($\beta = 1$) of a decoder
# with variance $s^2 = 0.05$ (standard deviation $0.22$ on the $[-1, 1]$ pixel scale). In
# general, $\beta$ with a summed squared error is the ELBO with $s^2 = \beta / 2$. A "small
# $\beta$" is nothing exotic: it is a statement that the decoder's pixels are trusted to
# within about $\pm 0.22$. (The lecture's derivation hides this factor: its Eqs. 17 and 18
# divide by $\sigma^d$ instead of $\sigma^2$, see [errata E3](../docs/ERRATA.md#e3).)
# Section 3 uses this to report the model's ELBO.
#
# ### Sum or mean? The hidden change of $\beta$
#
# Let $D_x = C H W$ be the number of pixel values and $D_z$ the number of latent values. Code
# often writes the loss with means instead of sums, and then the same $\beta$ means something
# else. Multiply each version by the constant that makes its reconstruction term the
# summed squared error (a constant factor only rescales the loss; Adam hardly notices); what
# multiplies the summed KL is the **effective** $\beta$:
#
# | reconstruction | KL | loss, rescaled to summed SE | effective $\beta$ |
# | --- | --- | --- | --- |
# | sum over pixels | sum over latent dims | $\text{SE} + \beta\,\text{KL}$ | $\beta$ |
# | mean over pixels | mean over latent dims | $D_x \cdot (\text{SE}/D_x + \beta\,\text{KL}/D_z)$ | $\beta\, D_x / D_z$ |
# | mean over pixels (`F.mse_loss` default) | sum over latent dims | $D_x \cdot (\text{SE}/D_x + \beta\,\text{KL})$ | $\beta\, D_x$ |
#
# The package's `VAE` offers the first two as `reduction="sum"` (the lecture's choice, the
# default) and `reduction="mean"`. A numerical check with a small untrained model: with the
# same random numbers, the "mean" loss times $D_x$ must equal the summed SE plus
# $\beta D_x / D_z$ times the KL.

# %%
seed_everything(0)
# (32x32 images: the same small set as the beta sweep of section 4)
x = ShapesDataset("test", image_size=32, num_images=pick(normal=4000, quick=1_024)).tensors(8)
beta = 0.1
vae_sum = VAE(image_size=32, latent_size=8, base_channels=8, beta=beta, reduction="sum")
vae_mean = VAE(**{**vae_sum.hparams, "reduction": "mean"})
vae_mean.load_state_dict(vae_sum.state_dict())             # the very same network

torch.manual_seed(0)
loss_sum, logs = vae_sum.compute_loss(x)
torch.manual_seed(0)
loss_mean, _ = vae_mean.compute_loss(x)
D_x, D_z = x[0].numel(), math.prod(vae_sum.latent_shape)
se, kl = logs["recon"] * D_x, logs["kl"]                    # per image, averaged over the batch
print(f"D_x = {D_x}, D_z = {D_z}")
print(f"sum  loss:        {loss_sum:.3f} = SE + beta * KL = {se + beta * kl:.3f}")
print(f"mean loss * D_x:  {loss_mean * D_x:.3f} = SE + beta*(D_x/D_z) * KL = {se + beta * D_x / D_z * kl:.3f}")
claim(math.isclose(loss_sum.item(), (se + beta * kl).item(), rel_tol=1e-4) and
      math.isclose((loss_mean * D_x).item(), (se + beta * D_x / D_z * kl).item(), rel_tol=1e-4),
      "the mean loss times D_x equals the summed SE plus beta D_x / D_z times the KL", quick=True)

# %% [markdown]
# For the lecture's $64 \times 64$ images the factor $D_x / D_z$ depends on the latent; with a
# flat latent vector, common in VAEs, it is large:

# %%
D_x64 = 3 * 64 * 64
latents = {"16x16x16 map (this course)": 16 * 16 * 16, "8x8x16 map": 8 * 8 * 16,
           "flat vector, 128 dims": 128, "flat vector, 16 dims": 16}
fig, ax = plt.subplots(figsize=(7, 2.8))
ax.barh(list(latents), [beta * D_x64 / d for d in latents.values()], color="tab:orange")
ax.axvline(beta, color="k", ls="--", label=f"beta = {beta} with sums")
ax.set(xscale="log", xlabel="effective beta with mean/mean reduction (beta = 0.1, 64x64x3 images)")
ax.legend(loc="lower right")
plt.show()

# %% [markdown]
# The same `beta=0.1` can therefore mean a weak KL (sums) or a KL hundreds of times
# stronger (means over a small latent), which explains why published $\beta$ values do not
# transfer between code bases. The lecture also sums over the **batch**; that multiplies the
# whole loss by the batch size, which leaves $\beta$ alone but scales the gradients (plain SGD
# would need a smaller learning rate). The package averages over images instead.
#
# ## 3. Training the package's `VAE`
#
# The package's `VAE` reuses the autoencoder's `Encoder` and `Decoder`. Two 1x1 convolutions on
# the encoder's feature map predict $\mu$ and $\log\sigma^2$, so the latent is itself a small map,
# $(16, h, w)$ here, one Gaussian per latent value. (DLStudio's VAE flattens the feature map into
# fully connected layers instead; see the module docstring of `dlstudio_lite/vae.py` for why
# the course keeps it spatial.) `compute_loss` is the loss above with `reduction="sum"` and
# the lecture's $\beta = 0.1$.
#
# In normal mode the notebook loads the checkpoint `data/checkpoints/vae_shapes/` (one
# `dlstudio-lite train vae ...` command, see `data/checkpoints/README.md`); otherwise, or if the
# file is missing or damaged, it trains here.

# %%
# The recipe `vae_shapes` (dlstudio_lite/recipes.py) holds the data, model and training
# settings; quick mode runs its quick variant.
train_set, test_set = recipe("vae_shapes").data_config().splits()
IMAGE_SIZE = train_set.image_size

seed_everything(0)
vae, history = load_or_train("vae_shapes", train_set, test_set)
device = next(vae.parameters()).device
print(f"trained for {history['train/loss'][-1][0]} steps;", vae.hparams)

# %% [markdown]
# **The ELBO of the trained model.** By section 2 the training loss is the exact negative
# ELBO of a decoder with variance $s^2 = \beta / 2 = 0.05$, scaled by $\beta$. The package's
# `VAE.elbo` computes the ELBO per image for the fixed decoder standard deviation stored in
# `decoder_std`; set it to $\sqrt{0.05}$ to evaluate the model the training objective
# describes, and convert with `dlstudio_lite.bits_per_dim` to bits per dimension, the unit
# papers use (for 8-bit pixel values; lower is better, and 8 would mean "no better than
# storing the raw bytes"). One sample of $z$ per image gives an unbiased estimate.

# %%
x_eval = test_set.tensors(pick(normal=200, quick=32)).to(device)
trained_std = vae.decoder_std
vae.decoder_std = math.sqrt(vae.beta / 2)        # the decoder variance the loss implies
with torch.no_grad():
    torch.manual_seed(0)
    elbo_per_image = vae.elbo(x_eval)             # nats per image, (B,)
    kl_eval = kl_divergence(*vae.encode(x_eval)).mean()
vae.decoder_std = trained_std
D_img = x_eval[0].numel()
print(f"decoder std {math.sqrt(vae.beta / 2):.3f}: ELBO {elbo_per_image.mean():.0f} nats per image "
      f"over {len(x_eval)} test images = {bits_per_dim(-elbo_per_image.mean(), D_img):.2f} bits per dimension")
print(f"  of which the KL term (the cost of the latent): {kl_eval / (D_img * math.log(2)):.3f} bits per dimension")
total_bpd = bits_per_dim(-elbo_per_image.mean(), D_img)
kl_bpd = kl_eval / (D_img * math.log(2))
claim(kl_bpd < 0.1 * total_bpd, "almost all of the bound is the reconstruction term",
      detail=f"KL {kl_bpd:.3f} of {total_bpd:.2f} bits per dimension")

# %% [markdown]
# Almost all of the bound is the reconstruction term. The decoder describes each pixel by
# a bell with standard deviation 0.22, about 28 of the 256 intensity levels, and pays for
# that width in every one of the $3 \cdot 64 \cdot 64$ values; the latent itself costs little.
# Bits per dimension make models comparable across image sizes, but only under the same
# assumed decoder variance: by section 2, choosing it is choosing $\beta$.

# %% [markdown]
# The two terms on their own scales: the reconstruction error (MSE per pixel) and the KL
# (nats per image) of the training batches and the test split.

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 3.5))
plot_history(history, keys=[k for k in ("train/recon", "test/recon") if k in history],
             ax=axes[0], logy=True, title="reconstruction (MSE per pixel)")
plot_history(history, keys=[k for k in ("train/kl", "test/kl") if k in history],
             ax=axes[1], title="KL(q(z|x) || N(0, I)), nats per image")
for ax in axes:
    for line in ax.get_lines():
        if len(line.get_xdata()) == 1:
            line.set(marker="o", linestyle="none")  # a single test point
plt.show()

# %%
kl_steps, kl_values = map(torch.tensor, zip(*history["train/kl"]))
recon_steps, recon_values = map(torch.tensor, zip(*history["train/recon"]))
first = kl_steps <= max(kl_steps[-1] // 10, kl_steps[0])    # the first tenth of training
peak_i = int(kl_values[first].argmax())
low_i = peak_i + int(kl_values[peak_i:].argmin())
recon_at = lambda step: recon_values[(recon_steps - step).abs().argmin()].item()  # noqa: E731
say(f"The reconstruction error falls throughout. The KL is largest early on ({kl_values[peak_i]:.0f} nats at "
    f"step {kl_steps[peak_i]}), when the encoder has just begun to pour information into $z$ without regard "
    f"for its cost; the $\\beta \\cdot$KL term then trims it to {kl_values[low_i]:.0f} nats by step "
    f"{kl_steps[low_i]}. After that it rises again, to {kl_values[-1]:.0f} nats at the end, while the training "
    f"MSE keeps falling (from {recon_at(kl_steps[low_i]):.4f} to {recon_values[-1]:.4f}): once the decoder "
    "makes good use of $z$, more information in it pays for itself.",
    (kl_values[peak_i] > 1.1 * kl_values[low_i], "the KL is largest early on and then falls"),
    (kl_values[-1] > 1.05 * kl_values[low_i], "after its minimum the KL rises again"),
    (recon_values[-1] < recon_at(kl_steps[low_i]), "the MSE keeps falling while the KL rises"))


# %% [markdown]
# Reconstructions of unseen test images, in the lecture's layout (input | output in each box).
# `reconstruct` decodes the mean $\mu$, without sampling noise.

# %%
x_test = test_set.tensors(16).to(device)
with torch.no_grad():
    x_rec = vae.reconstruct(x_test)
show_images(input_output_pairs(x_test, x_rec), nrow=4, scale=1.5,
            title=f"VAE, test images: input | output   (PSNR {psnr(x_rec, x_test):.1f} dB)")
plt.show()

# %% [markdown]
# ## 4. Reconstruction against KL as $\beta$ changes
#
# To see the trade-off, train the same small VAE with several $\beta$ and otherwise identical
# settings, and measure the test reconstruction error and KL at the end. The sweep uses
# $32 \times 32$ images instead of section 3's $64 \times 64$ (the same widths, `base_channels=16`,
# but an $8 \times 8$ latent grid instead of $16 \times 16$), trained
# for 3,000 steps each (the recipes `vae_beta_sweep/beta_*`; quick mode trains their quick
# variants for a few steps); in normal mode the five shipped checkpoints of
# `data/checkpoints/vae_beta_sweep/` are loaded (see that folder's README row).
# A sweep is only worth reading if its best run really reconstructs. The main model of
# section 3 cannot be the yardstick: its test MSE is measured on $64 \times 64$ images with a
# $16 \times 16$ latent grid, a different task. The yardstick here is on the same $32 \times 32$ test
# images: the MSE of a model that ignores its input and always outputs the average test image
# (the best any input-independent output can do).

# %%
betas = pick(normal=[0.01, 0.1, 1.0, 10.0, 100.0], quick=[0.1, 100.0])   # which runs to show
# One recipe per beta: vae_beta_sweep/beta_B (dlstudio_lite/recipes.py), all on the same data.
sweep_train, sweep_test = recipe("vae_beta_sweep/beta_0.1").data_config().splits()
SWEEP_SIZE = sweep_train.image_size
sweep = {}
for b in betas:
    seed_everything(0)
    model, hist = load_or_train(f"vae_beta_sweep/beta_{b:g}", sweep_train, sweep_test)
    sweep[b] = {"model": model, "recon": hist["test/recon"][-1][1], "kl": hist["test/kl"][-1][1]}
    print(f"beta {b:>7}: test MSE {sweep[b]['recon']:.4f}, KL {sweep[b]['kl']:8.1f} nats")
sweep_images = sweep_test.tensors(len(sweep_test))
mean_image_mse = (sweep_images - sweep_images.mean(0)).pow(2).mean().item()
print(f"always the average test image: MSE {mean_image_mse:.4f}; "
      f"smallest beta: {sweep[min(betas)]['recon'] / mean_image_mse:.0%} of that")
claim(sweep[min(betas)]["recon"] < 0.5 * mean_image_mse,
      "the smallest beta really reconstructs (far below the input-independent yardstick)")

# %%
fig, ax1 = plt.subplots(figsize=(6.5, 3.8))
ax1.plot(betas, [sweep[b]["recon"] for b in betas], "o-", color="tab:blue")
ax1.set(xscale="log", xlabel="beta", title="reconstruction vs KL across beta")
ax1.set_ylabel("test MSE per pixel", color="tab:blue")
ax2 = ax1.twinx()
ax2.plot(betas, [sweep[b]["kl"] for b in betas], "s--", color="tab:red")
ax2.set_ylabel("test KL, nats per image", color="tab:red")
plt.show()

# %%
kls, mses = [sweep[b]["kl"] for b in betas], [sweep[b]["recon"] for b in betas]
top, second = betas[-1], betas[-2]
say(f"Raising $\\beta$ makes every nat of information in $z$ more expensive: the KL falls (from "
    f"{kls[0]:.0f} nats at $\\beta = {betas[0]:g}$) and the reconstruction error rises. Only at the largest "
    f"value, $\\beta = {top:g}$, is the KL close to zero ({sweep[top]['kl']:.2f} nats per image), meaning the "
    f"encoder's output no longer depends on the image, and the test MSE ({sweep[top]['recon']:.4f}) is that of "
    f"always answering the average image ({mean_image_mse:.4f}); at $\\beta = {second:g}$ the KL is still "
    f"{sweep[second]['kl']:.1f} nats. Section 7 looks at the collapsed regime.",
    (all(a > b for a, b in zip(kls, kls[1:])), "the KL falls as beta rises"),
    (all(a < b for a, b in zip(mses, mses[1:])), "the reconstruction error rises with beta"),
    (sweep[top]["kl"] < 1.0, "at the largest beta the KL is close to zero"),
    (abs(sweep[top]["recon"] / mean_image_mse - 1) < 0.1, "the collapsed model does as well as the average image"))

# %% [markdown]
# ## 5. Sampling new images
#
# Generating is what the prior is for: draw $z \sim \mathcal N(0, I)$ with the latent's shape
# and decode it (`VAE.sample`).
#
# **A bug in the lecture's code** ([errata B3](../docs/ERRATA.md#b3)): its "sample the standard normal" mode
# sets `mu` to zeros and `logvar` to **ones**, then reparameterizes. But $\log\sigma^2 = 1$
# means $\sigma^2 = e \approx 2.72$, so the latents come from $\mathcal N(0, e\, I)$, with a
# standard deviation 1.65 times too large. The standard normal needs `logvar = 0`. Both side
# by side, with the same $\varepsilon$, and the spread of the latents each one feeds the decoder:

# %%
gen = torch.Generator().manual_seed(0)
eps = torch.randn((8, *vae.latent_shape), generator=gen).to(device)
zeros = torch.zeros_like(eps)
with torch.no_grad():
    correct = vae.decode(zeros + torch.exp(0.5 * zeros) * eps)              # logvar = 0
    buggy = vae.decode(zeros + torch.exp(0.5 * torch.ones_like(eps)) * eps)  # logvar = 1
    same = torch.allclose(vae.sample(8, generator=torch.Generator().manual_seed(0)), correct,
                          atol=1e-5)
print("VAE.sample draws from N(0, I) (same images as the 'correct' row):", same)
print(f"std of the latents: logvar = 0 -> {eps.std():.2f}, logvar = 1 -> {(math.exp(0.5) * eps).std():.2f}")
show_side_by_side({"z ~ N(0, I)  (logvar = 0)": correct,
                   "z ~ N(0, e I)  (bug: logvar = 1)": buggy,
                   "for comparison: test images": x_test}, n=8)
plt.show()
claim(same, "VAE.sample draws from N(0, I)", quick=True)

# %%
bug_change = (buggy - correct).pow(2).mean().sqrt().item()
sample_spread = (correct - correct.mean(0)).pow(2).mean().sqrt().item()


def lit_share(x):
    """Share of pixels that are not (nearly) black: x (B, 3, H, W) in [-1, 1] -> float."""
    return (x.clamp(-1, 1) > -0.5).any(dim=1).float().mean().item()


say(f"The bug changes each decoded picture by {bug_change:.3f} (RMS per pixel), "
    f"{bug_change / sample_spread:.0%} of the correct samples' spread around their mean "
    f"({sample_spread:.3f}, RMS per pixel). The correct samples have about as much lit area as the test images "
    f"({lit_share(correct):.0%} of their pixels against {lit_share(x_test):.0%}), spread in pieces.",
    (bug_change < 0.5 * sample_spread, "the bug is nearly invisible here"))

# %% [markdown]
# Two things to notice. First, the bug is nearly invisible here: this decoder starts with
# convolutions followed by GroupNorm, which divides out most of the overall scale of its
# input, so a $z$ that is 1.65 times too wide decodes to a similar picture. A decoder
# without such normalisation (DLStudio's VAE feeds $z$ through fully connected layers) is
# more sensitive. A sampler should draw from the distribution it claims either way; a bug
# that a picture hides is still a bug, and a test against $\mathcal N(0, I)$ catches it.
#
# Second, be honest about the samples: they have the dataset's dark background and colours
# and blob-like pieces of shapes, but no whole, crisp shapes. Two numbers: the course's
# shape judge (the feature network of lecture 6, which counts an image as valid when it sees
# clean shapes) on 64 samples and 64 test images, and how the encoder uses its latent
# channels on the test split.

# %%
with torch.no_grad():
    samples_64 = vae.sample(64, generator=torch.Generator().manual_seed(0)).clamp(-1, 1).cpu()
    mu_test, logvar_test = vae.encode(test_set.tensors(200).to(device))
# A channel "carries information" when its means differ from image to image; a latent value
# of the encoder (mean plus its noise) has, per channel, the spread below (the prior's is 1).
mean_spread = mu_test.std(dim=(0, 2, 3)).cpu()
latent_spread = (mu_test.var(dim=(0, 2, 3)) + logvar_test.exp().mean(dim=(0, 2, 3))).sqrt().cpu()
used_channels = int((mean_spread > 0.3).sum())
text = (f"Only {used_channels} of the {len(mean_spread)} latent channels carry information (their means "
        "vary from image to image with a standard deviation above 0.3); the others stay at the prior. One "
        "channel at a time, the encoder's latents have the prior's spread (from "
        f"{latent_spread.min():.2f} to {latent_spread.max():.2f}; the prior: 1), so what the samples lack is "
        "not the range of single values but how positions and channels go together.")
checks = [(abs(latent_spread - 1).max() < 0.1, "per channel the encoder's latents have the prior's spread")]
if not quick_mode():
    from dlstudio_lite.quality import valid_shape_rate

    valid_samples, valid_test = valid_shape_rate(samples_64), valid_shape_rate(test_set.tensors(64))
    text = (f"The shape judge counts {valid_samples:.0%} of the samples as valid, against {valid_test:.0%} of "
            "the test images. ") + text
    checks.append((valid_samples < 0.1 < 0.8 < valid_test, "the samples have no whole, crisp shapes"))
say(text, *checks)

# %% [markdown]
# The prior treats each of the $16 \times 16$ latent positions (and each channel)
# independently, so nothing makes neighbouring positions agree on one shape: the decoder is
# fed combinations of values that the encoder never produces together. That is what the
# rest of the course attacks: a codebook makes the latent discrete (lecture 5), and a learned
# prior over the grid of codes replaces the independent Gaussian (lecture 6).
#
# ## 6. Interpolating between two images in latent space
#
# Encode two test images to their means $\mu_a, \mu_b$, walk along the straight line
# $z_t = (1 - t)\,\mu_a + t\,\mu_b$ and decode each point. For comparison, the bottom row
# blends the pixels themselves.

# %%
a, b = 0, 5
ts = torch.linspace(0, 1, 8, device=device).view(-1, 1, 1, 1)
with torch.no_grad():
    mu_a, mu_b = vae.encode(x_test[[a, b]])[0]
    latent_path = vae.decode((1 - ts) * mu_a + ts * mu_b)
pixel_path = (1 - ts) * x_test[a] + ts * x_test[b]
show_side_by_side({"decoded (1-t) mu_a + t mu_b": latent_path, "pixels (1-t) x_a + t x_b": pixel_path},
                  n=8, title="t = 0 ... 1")
plt.show()
with torch.no_grad():
    ends = vae.reconstruct(x_test[[a, b]])
claim(torch.allclose(latent_path[[0, -1]], ends, atol=1e-4),
      "the latent path starts and ends at the two reconstructions", quick=True)


def lit_brightness(frame):
    """Mean brightness (0 black, 1 white) of the lit pixels of one (3, H, W) frame."""
    pixels = ((frame.clamp(-1, 1) + 1) / 2).mean(dim=0)
    return pixels[pixels > 0.15].mean().item()


mid = len(ts) // 2
ends_brightness = (lit_brightness(latent_path[0]) + lit_brightness(latent_path[-1])) / 2
pixel_ends = (lit_brightness(pixel_path[0]) + lit_brightness(pixel_path[-1])) / 2
latent_keeps = lit_brightness(latent_path[mid]) / ends_brightness
pixel_keeps = lit_brightness(pixel_path[mid]) / pixel_ends

# %%
say(f"Pixel blending superimposes two half-transparent images: in the middle frame ($t = {ts[mid].item():.2f}$) "
    f"its lit pixels have {pixel_keeps:.0%} of the end frames' brightness. The latent path starts and ends at "
    f"the two reconstructions; its middle frame keeps {latent_keeps:.0%} of the brightness, only somewhat more than "
    "the blend: the middle frames are a dimmer mixture of both shapes, not one new shape.",
    (latent_keeps > pixel_keeps, "the latent path's middle frame is brighter than the pixel blend's"))

# %%
latent_c, latent_h, latent_w = vae.latent_shape
say(f"With a latent this large ({latent_c * latent_h * latent_w:,} values, although only {used_channels} of its "
    f"{latent_c} channels carry information, section 5) and $\\beta$ this small, each position of the latent "
    "map mostly describes its own patch of the image, so the path is local. A stronger $\\beta$ or a smaller "
    "latent is expected to make it smoother and more \"semantic\", at the price of blurrier reconstructions "
    "(section 4 measures that price; this notebook does not test the smoothness).")

# %% [markdown]
# ## 7. Posterior collapse
#
# If $\beta$ is too large, the cheapest way to lower the loss is to make
# $q(z \mid x) = \mathcal N(0, I)$ for **every** $x$: the KL drops to zero, $z$ carries no
# information about the image, and the decoder learns to output one average image whatever
# it is given. The KL per latent channel (averaged over images and positions) shows it,
# for the smallest and the largest $\beta$ of the sweep.

# %%
def kl_per_channel(model, x):
    """Mean KL per latent channel (nats per latent value): (latent_channels,)."""
    with torch.no_grad():
        mu, logvar = model.encode(x)
    return (0.5 * (mu ** 2 + logvar.exp() - 1 - logvar)).mean(dim=(0, 2, 3)).cpu()


x_small = sweep_test.tensors(64)
low, high = min(betas), max(betas)
fig, axes = plt.subplots(1, 2, figsize=(11, 3), sharey=True)
for ax, bb in zip(axes, (low, high)):
    kl_c = kl_per_channel(sweep[bb]["model"], x_small)
    ax.bar(range(len(kl_c)), kl_c.numpy(), color="tab:red" if bb == high else "tab:blue")
    ax.set(title=f"beta = {bb}: total KL {sweep[bb]['kl']:.1f} nats/image\n"
                 f"(largest bar {kl_c.max():.3f})", xlabel="latent channel")
axes[0].set_ylabel("KL per latent value (nats)")
plt.show()
kl_low, kl_high = kl_per_channel(sweep[low]["model"], x_small), kl_per_channel(sweep[high]["model"], x_small)
strong = kl_low > 0.1
weak = (f"the other {int((~strong).sum())} only {kl_low[~strong].min():.3f} to {kl_low[~strong].max():.3f}, "
        "little but still" if (~strong).any() else "all of them")
say(f"For $\\beta = {low:g}$ the channels are used unevenly: {int(strong.sum())} of the {len(kl_low)} carry more than "
    f"0.1 nats per latent value (up to {kl_low.max():.2f}), {weak} far above every bar of "
    f"$\\beta = {high:g}$, which all sit at zero (largest {kl_high.max():.1e}).",
    (kl_low.min() > 10 * kl_high.max(), "for the smallest beta every channel still carries some information, "
     "far above the largest beta's bars"),
    (kl_high.max() < 0.01, "for the largest beta all bars sit at zero"))

# %% [markdown]
# The reconstructions tell the same story: with the large $\beta$ every input gives nearly the
# same output. The spread of the reconstructions across different inputs measures how much
# they depend on the input at all.

# %%
with torch.no_grad():
    recs = {bb: sweep[bb]["model"].reconstruct(x_small) for bb in (low, high)}
spread = {k: (v - v.mean(0)).pow(2).mean().sqrt().item() for k, v in
          {"input": x_small, **{f"beta = {bb}": r for bb, r in recs.items()}}.items()}
print("spread across images (RMS distance to the batch mean):",
      ", ".join(f"{k}: {v:.3f}" for k, v in spread.items()))
show_side_by_side({"input": x_small, f"beta = {low}": recs[low],
                   f"beta = {high} (collapsed)": recs[high]}, n=8)
plt.show()
claim(spread[f"beta = {high}"] < 0.1 * spread["input"],
      "with the large beta every input gives nearly the same output")

# %% [markdown]
# Collapse does not need an absurd $\beta$: a powerful decoder (for instance an autoregressive
# one) can model the data without $z$ and collapse even at $\beta = 1$, and the mean/mean
# reduction of section 2 can multiply an innocent-looking $\beta$ by hundreds. Common
# remedies are warming $\beta$ up from zero during training, or a "free bits" floor on the
# KL per dimension; a VQ-VAE avoids the problem by construction, since its KL term is a
# constant.
#
# ## 8. The trained result
#
# The trained VAE on 32 more unseen test images, and, in normal mode, next to lecture 3's
# autoencoder, trained with the same settings and number of steps.

# %%
x_more = test_set.tensors(48)[16:48].to(device)
with torch.no_grad():
    x_more_rec = vae.reconstruct(x_more)
    mu_more, logvar_more = vae.encode(x_more)
kl_more = kl_divergence(mu_more, logvar_more).mean()
show_images(input_output_pairs(x_more, x_more_rec), nrow=4, scale=1.5,
            title=f"VAE, input | output on 32 test images: PSNR {psnr(x_more_rec, x_more):.1f} dB, "
                  f"KL {kl_more:.0f} nats/image")
plt.show()

# %%
autoencoder = None
if not quick_mode():
    try:
        autoencoder = load_model(CHECKPOINTS / "autoencoder_shapes" / "checkpoint.pt", device)
    except CheckpointError as err:
        print(f"NOTE: no autoencoder checkpoint to compare with.\n  {err}")
if autoencoder is not None:
    with torch.no_grad():
        ae_rec = autoencoder.reconstruct(x_more)
    show_side_by_side({"input": x_more,
                       f"autoencoder (lecture 3): PSNR {psnr(ae_rec, x_more):.1f} dB": ae_rec,
                       f"VAE: PSNR {psnr(x_more_rec, x_more):.1f} dB": x_more_rec}, n=8)
    plt.show()
    ae_latent, vae_latent = autoencoder.encode(x_more[:1])[0].shape, mu_more[0].shape
    say(f"With the same widths and training budget the autoencoder reconstructs better "
        f"({psnr(ae_rec, x_more):.1f} against {psnr(x_more_rec, x_more):.1f} dB), but from a bigger latent: "
        f"{' x '.join(map(str, ae_latent))} = {math.prod(ae_latent):,} numbers per image against the VAE's "
        f"{' x '.join(map(str, vae_latent))} = {math.prod(vae_latent):,}.",
        (psnr(ae_rec, x_more) > psnr(x_more_rec, x_more), "the autoencoder reconstructs better"),
        (math.prod(ae_latent) > math.prod(vae_latent), "the autoencoder's latent is bigger"))

# %% [markdown]
# Besides the bigger latent, the autoencoder pays no KL price and decodes exactly the
# latent it was given, while the VAE's decoder is trained on noisy latents and learns to ignore detail that a
# slightly moved $z$ would not preserve. In exchange the VAE got a latent that can be
# sampled and interpolated; that is what $\beta = 0.1$ with summed errors buys (a weak KL
# weight, section 2), and it is also why its prior samples are poor (section 5). The small
# holes inside the shapes are the finest such detail; lecture 5 measures what this VAE does
# with them, next to VQ-VAEs given the same and a larger budget of bits.

# %% [markdown]
# ## Summary
#
# - Sampling $z \sim \mathcal N(\mu, \sigma^2)$ has no gradient; $z = \mu + \sigma\varepsilon$ with
#   $\varepsilon \sim \mathcal N(0, I)$ has the same distribution and an unbiased gradient
#   (`reparameterize`, `Normal.rsample`).
# - Loss = reconstruction + $\beta$ KL, with
#   $\mathrm{KL} = \tfrac12 \sum (\mu^2 + \sigma^2 - 1 - \log\sigma^2)$. Averaging instead of
#   summing multiplies the effective $\beta$ by $D_x / D_z$ (or by $D_x$ when only the
#   reconstruction is averaged).
# - Larger $\beta$: less information in $z$, worse reconstructions; too large, and the posterior
#   collapses onto the prior and the decoder ignores its input.
# - Generate by decoding $z \sim \mathcal N(0, I)$ (log-variance 0, not 1). Latent
#   interpolation's middle frames are a dimmer mixture of both shapes, only somewhat
#   brighter than pixel blending (section 6), not new shapes.
# - $\beta$ with a summed squared error is the exact ELBO of a decoder with variance
#   $\beta / 2$: the lecture's $\beta = 0.1$ is $\beta = 1$ with $s^2 = 0.05$.
#
# ## Questions to think about
#
# 1. If $\beta$ and the decoder variance are one knob (section 2), what would it mean to
#    *learn* the decoder variance along with the network? Which way would you expect it to
#    move as the reconstructions improve, and what would that do to the effective $\beta$?
# 2. The ELBO in bits per dimension depends on the decoder variance you assume. Why is it
#    still fair to compare two models with it, and under which condition is it not?
# 3. The samples of section 5 had the right colours but no whole shapes, although every latent
#    channel had the prior's spread. What would a larger $\beta$ change in those numbers, and
#    why would it still not give whole shapes?
# 4. Posterior collapse drives the KL to zero. Is a KL of zero for *one* latent channel a
#    problem, or can it be a sensible choice by the model?
#
# **Next:** [exercise 4](../exercises/ex04_vae.ipynb) (the VAE exercise). Lecture 5 replaces the Gaussian
# latent by a codebook: the VQ-VAE.

# %%
print(summary())
