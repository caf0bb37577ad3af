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
# # Lecture 5: VQ-VAE, a VAE with a learned codebook
#
# The VAE of lecture 4 describes an image with continuous Gaussian latents and pays for it
# with blur. A VQ-VAE keeps the encoder and the decoder but puts the codebook of lecture 1
# between them: every encoder output vector is replaced by its nearest code vector, so the
# decoder only ever sees vectors from a fixed, learned vocabulary, and the image becomes a
# grid of integers.
#
# **What you will learn**
#
# - the three terms of the VQ-VAE loss (the lecture's Eq. 22) and, checked with autograd,
#   which parameters each of them trains;
# - the stop-gradient `sg[.]` as `.detach()`, and the straight-through estimator that lets
#   the reconstruction gradient jump over the non-differentiable nearest-code lookup;
# - how to train the package's `VQVAE` and read its perplexity and codebook-usage plots;
# - dead codes, and how an EMA codebook with code restarts revives them;
# - the lecture's claim, measured fairly: VAE and VQ-VAE on the same latent grid, with the
#   bits per image each one spends, and what a finer grid of codes changes for the tiny holes
#   inside the shapes;
# - two bugs from the course's sources (the lecture's listing, a student project) that run
#   without any error, and their symptoms;
# - images as grids of code indices.

# %%
# %matplotlib inline

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dlstudio_lite import (CHECKPOINTS, VAE, VQVAE, ShapesDataset, Trainer, latent_rate, load_or_train,
                           pick, psnr, quick_mode, recipe, seed_everything)
from dlstudio_lite.claims import claim, say, summary
from dlstudio_lite.plot import plot_history, show_images, show_reconstructions

seed_everything(0)
print("quick mode:", quick_mode())

# %% [markdown]
# ## 1. The loss and who learns from which term
#
# The encoder gives a vector $z_e(x)$ per latent pixel, the quantizer replaces it by the
# nearest code $e$, and the decoder turns the grid of codes into $\hat x$. The lecture's
# Eq. 22 adds three terms:
#
# $$
# \mathcal{L} \;=\; \underbrace{\lVert x - \hat x \rVert^2}_{\text{reconstruction}}
# \;+\; \underbrace{\lVert \mathrm{sg}[z_e(x)] - e \rVert^2}_{\text{codebook}}
# \;+\; \beta\, \underbrace{\lVert z_e(x) - \mathrm{sg}[e] \rVert^2}_{\text{commitment}} .
# $$
#
# $\mathrm{sg}[\cdot]$ (*stop-gradient*) is the identity in the forward pass and has zero
# derivative in the backward pass. In PyTorch it is `.detach()`. So:
#
# - the **codebook** term treats $z_e$ as a constant: it moves the chosen codes towards the
#   encoder outputs and nothing else;
# - the **commitment** term treats $e$ as a constant: it pulls the encoder outputs towards
#   their codes ($\beta = 0.25$), so the encoder does not drift away from the codebook;
# - the **reconstruction** term trains the decoder, and, through the straight-through
#   estimator below, the encoder. It does *not* reach the codebook.
#
# The nearest-code lookup $k = \arg\min_j \lVert z_e - e_j \rVert$ is a piecewise-constant
# function of $z_e$: its derivative is zero almost everywhere, and the reconstruction
# gradient would stop at the quantizer. The **straight-through estimator** uses
#
# $$ z_q = z_e + \mathrm{sg}[e - z_e] $$
#
# whose value is $e$ and whose derivative with respect to $z_e$ is the identity: the
# gradient that arrives at $z_q$ is handed unchanged to $z_e$.
#
# A complete VQ-VAE in plain PyTorch, small enough to read in one go: a one-layer encoder
# and decoder, a codebook of 16 vectors of dimension 8.

# %%
torch.manual_seed(0)
D, K = 8, 16
encoder = nn.Conv2d(3, D, kernel_size=4, stride=4)           # (B, 3, 16, 16) -> (B, D, 4, 4)
codebook = nn.Parameter(torch.randn(K, D))                    # K codes of dimension D
decoder = nn.ConvTranspose2d(D, 3, kernel_size=4, stride=4)  # (B, D, 4, 4) -> (B, 3, 16, 16)
x = torch.rand(4, 3, 16, 16) * 2 - 1


def tiny_vqvae_terms(x, straight_through=True):
    z_e = encoder(x)                                        # (B, D, h, w)
    b, _, h, w = z_e.shape
    z = z_e.permute(0, 2, 3, 1).reshape(-1, D)              # (B*h*w, D): one row per pixel
    k = torch.cdist(z, codebook).argmin(dim=1)              # nearest code per row
    e = codebook[k]                                         # (B*h*w, D)
    z_q = z + (e - z).detach() if straight_through else e   # value e either way
    x_hat = decoder(z_q.view(b, h, w, D).permute(0, 3, 1, 2))
    return {"reconstruction": F.mse_loss(x_hat, x),
            "codebook": F.mse_loss(e, z.detach()),              # ||sg[z_e] - e||^2
            "commitment": F.mse_loss(z, e.detach())}            # ||z_e - sg[e]||^2


groups = {"encoder": list(encoder.parameters()), "codebook": [codebook],
          "decoder": list(decoder.parameters())}


def grad_norms(term):
    """Norm of d(term)/d(parameters) for each group; 0 where autograd finds no path."""
    norms = {}
    for name, params in groups.items():
        grads = torch.autograd.grad(term, params, retain_graph=True, allow_unused=True)
        norms[name] = sum(float(g.norm() ** 2) for g in grads if g is not None) ** 0.5
    return norms


table = {name: grad_norms(term) for name, term in tiny_vqvae_terms(x).items()}
table["reconstruction without STE"] = grad_norms(
    tiny_vqvae_terms(x, straight_through=False)["reconstruction"])
print(f"{'gradient norm of':28s}" + "".join(f"{g:>12s}" for g in groups))
for term, norms in table.items():
    print(f"{term:28s}" + "".join(f"{norms[g]:12.2e}" for g in groups))
no_gradient = {term: {g for g, v in norms.items() if v == 0} for term, norms in table.items()}
claim(no_gradient == {"reconstruction": {"codebook"}, "codebook": {"encoder", "decoder"},
                      "commitment": {"codebook", "decoder"}, "reconstruction without STE": {"encoder"}},
      "the codebook term reaches only the codebook, the commitment term only the encoder, the "
      "reconstruction term encoder and decoder; without the STE the encoder gets nothing",
      quick=True, detail=f"groups without gradient: {no_gradient}")

# %%
fig, ax = plt.subplots(figsize=(8, 3.2))
width = 0.2
for i, (term, norms) in enumerate(table.items()):
    values = [norms[g] for g in groups]
    pos = np.arange(len(groups)) + (i - 1.5) * width
    ax.bar(pos, values, width, label=term)
    for p, v in zip(pos, values):
        if v == 0:
            ax.text(p, 1.5e-4, "0", ha="center", fontsize=9)
ax.set_xticks(range(len(groups)), list(groups))
ax.set_yscale("log")
ax.set_ylim(1e-4, None)
ax.set_ylabel("gradient norm")
ax.set_title("which parameters each loss term trains (0 = no gradient at all)")
ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1, 1))
plt.show()

# %% [markdown]
# Exactly the pattern of the equation: the codebook term reaches only the codebook, the
# commitment term only the encoder, the reconstruction term encoder and decoder. The last
# row shows why the straight-through trick is needed: decoding `e` itself sends the
# reconstruction gradient into the *codebook* and leaves the encoder with nothing, because
# the `argmin` has no gradient. The encoder would then learn only from the commitment term,
# which knows nothing about the image.
#
# ### The straight-through estimator in four lines
#
# The same trick works for any non-differentiable rounding. Here `round` plays the role of
# the nearest-code lookup on a line whose "codebook" is the integers:

# %%
z = torch.tensor([0.3, 1.6, -2.2], requires_grad=True)
z_q = z + (torch.round(z) - z).detach()   # forward: round(z); backward: identity
(z_q * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
print("forward value:", z_q.detach().tolist(), " gradient reaching z:", z.grad.tolist())
claim(torch.equal(z_q.detach(), torch.round(z.detach())) and z.grad.tolist() == [1.0, 2.0, 3.0],
      "forward: round(z); backward: identity", quick=True)

# %% [markdown]
# ## 2. Training the package's VQ-VAE
#
# `dlstudio_lite.VQVAE` is the lecture's architecture: the SkipBlock encoder of lecture 3,
# a 1x1 "pre-VQ" convolution down to the code dimension, the quantizer, a 1x1 "post-VQ"
# convolution and the SkipBlock decoder. Two choices differ from the lecture's listing,
# and the docstrings of `vqvae.py` and `quantize/codebook.py` say why: the reconstruction term is a
# mean (not a sum) over pixels, and the codebook follows an exponential moving average
# (EMA) of the encoder vectors assigned to it instead of the codebook term's gradient
# (section 4 shows what that buys).
#
# As in lecture 4 the widths are a quarter of the lecture's (`base_channels=16`), and
# $K = 512$ codes of dimension 64. The codebook starts from k-means on the first batch's
# encoder vectors (`kmeans_init`) and restarts codes left idle for 20 steps
# (`dead_code_steps`): both are the package's defaults, and section 4 shows what goes wrong
# without them.
#
# One departure from the lecture's example: the grid of codes is $32 \times 32$ (one code per
# $2 \times 2$ patch) instead of $16 \times 16$. A few minutes of CPU training are far from the
# lecture's 100 epochs, and a single code of the finer grid has far fewer
# colour-and-pinhole combinations to stand for. Section 5 puts it next to a VQ-VAE on the
# lecture's $16 \times 16$ grid, trained just as long, and shows what the finer grid costs in
# bits and buys in detail. (The finer grid also changes the network: one downsampling stage
# fewer in the encoder and one upsampling stage fewer in the decoder, so fewer layers and
# fewer parameters; section 5 counts them.)
# In normal mode the notebook loads the checkpoint shipped in `data/checkpoints/vqvae_shapes/`
# (one `dlstudio-lite train vqvae ...` command, see `data/checkpoints/README.md`); in quick
# mode, or when the file is missing or damaged, it trains a model here.

# %%
# The recipe `vqvae_shapes` (dlstudio_lite/recipes.py) holds the data, model and training
# settings; quick mode runs its quick variant.
train_set, test_set = recipe("vqvae_shapes").data_config().splits()   # the last 200: test
IMAGE_SIZE, NUM_IMAGES = train_set.image_size, len(train_set) + len(test_set)

seed_everything(0)
vqvae, vq_history = load_or_train("vqvae_shapes", train_set, test_set)
print({k: vqvae.hparams[k] for k in ("base_channels", "latent_size", "num_codes", "code_dim",
                                     "beta", "quantizer", "decay", "kmeans_init", "dead_code_steps")})
n_params = sum(p.numel() for p in vqvae.parameters())
n_buffers = sum(b.numel() for b in vqvae.buffers())
print(f"{n_params:,} trainable parameters (what the optimizer updates)")
if vqvae.hparams["quantizer"] == "ema":
    print(f"+ {n_buffers:,} numbers in buffers, not counted above: the EMA codebook "
          f"({vqvae.quantizer.codebook.numel():,} = {vqvae.num_codes} codes x {vqvae.code_dim}) and its "
          f"running statistics, updated by averaging rather than by gradients")

# %% [markdown]
# The trainer logs the reconstruction MSE, the VQ loss (for the EMA codebook: $\beta$ times
# the commitment term), and the **perplexity** $\exp(H)$ of the codes used in each batch,
# where $H = -\sum_k p_k \log p_k$ and $p_k$ is the fraction of latent pixels that chose
# code $k$. It equals $K$ when all codes are used equally often and 1 when a single code
# is used for everything: roughly, "how many codes are really in use".

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 3.5))
plot_history(vq_history, keys=[k for k in ("train/recon", "train/vq", "test/recon")
                               if k in vq_history], ax=axes[0], logy=True, title="losses")
plot_history(vq_history, keys=["train/perplexity"], ax=axes[1],
             title=f"perplexity per batch (K = {vqvae.num_codes})")
plt.show()

# %%
test_with_holes = ShapesDataset("test", image_size=IMAGE_SIZE, num_images=NUM_IMAGES, return_holes=True)
x_test, holes_test = map(torch.stack, zip(*[test_with_holes[i] for i in range(pick(normal=200, quick=32))]))
with torch.no_grad():
    x_vq = vqvae.reconstruct(x_test).clamp(-1, 1)
show_reconstructions(x_test, x_vq, n=8, title=f"VQ-VAE on unseen images "
                     f"(PSNR {float(psnr(x_vq, x_test)):.1f} dB)")
plt.show()

# %% [markdown]
# ### Codebook usage
#
# Which codes does the whole test set use? The histogram counts, for every code, how many
# latent pixels chose it, codes sorted from most to least used. A long flat tail means a
# well-used codebook; codes with a count of zero are *dead*: they cost parameters and never
# help.

# %%
indices = vqvae.encode_to_indices(x_test)               # (N, h, w) long
counts = torch.bincount(indices.flatten(), minlength=vqvae.num_codes)
p = counts.float() / counts.sum()
test_perplexity = float(torch.exp(-torch.special.xlogy(p, p).sum()))
fig, ax = plt.subplots(figsize=(9, 3))
ax.bar(range(vqvae.num_codes), counts.sort(descending=True).values.numpy(), width=1.0)
ax.set_yscale("log")
ax.set_xlabel("code (sorted by use)")
ax.set_ylabel("latent pixels")
ax.set_title(f"{int((counts > 0).sum())} of {vqvae.num_codes} codes used on the test set, "
             f"perplexity {test_perplexity:.0f}")
plt.show()

# %% [markdown]
# A perplexity below $K$ with every code in use means uneven use. How uneven, and why?
# Most of every image is black background, so the background codes deserve a look: below,
# a latent pixel counts as background when its $2 \times 2$ patch of the image is black.

# %%
share = counts.sort(descending=True).values.double() / counts.sum()     # most used first
tenth = vqvae.num_codes // 10
background = F.max_pool2d((x_test.amax(1) > -0.99).float()[:, None], 2)[:, 0] == 0   # (N, h, w)
background_codes = int(indices[background].unique().numel())
say(f"The use is uneven, but not because a few codes dominate. With {int((counts > 0).sum())} of "
    f"{vqvae.num_codes} codes in use and a test perplexity of {test_perplexity:.0f}, the most used "
    f"code holds only {share[0]:.1%} of the latent pixels; the most used tenth of the codebook "
    f"({tenth} codes) holds {share[:tenth].sum():.0%}, the least used half {share[len(share) // 2:].sum():.0%}. "
    f"Background is {background.float().mean():.0%} of all latent pixels, yet it is spread over "
    f"{background_codes} different codes (section 3 shows why), so no single \"background\" code "
    f"wins a large share: the long tail is the data, not dead weight.",
    (share[0] < 0.05, "the most used code holds only a small share"),
    (share[:tenth].sum() > 0.3, "the most used tenth of the codebook holds far more than a tenth"),
    (share[len(share) // 2:].sum() < 0.25, "the least used half holds a small share"),
    (background.float().mean() > 0.5 and background_codes > 50, "background is most latent pixels, over many codes"))

# %% [markdown]
# **Two perplexities.** The training curve above reads lower than the number in this
# histogram's title, for the same model. They are not the same measurement. The curve is
# the perplexity of *one training batch* (32 images), averaged between log points; the
# histogram pools the codes of the whole test set. Perplexity is not an average over
# images: a larger sample holds more images with their own shapes, colours and, as
# section 3 shows, their own background codes, so its code histogram is spread over more
# codes. The same model's perplexity, computed on growing pools of test images:

# %%
pool_sizes = [n for n in (1, 2, 4, 8, 16, 32, 64, 128, 200) if n <= len(indices)]


def pooled_perplexity(idx):
    p = torch.bincount(idx.flatten(), minlength=vqvae.num_codes).float()
    p = p / p.sum()
    return float(torch.exp(-torch.special.xlogy(p, p).sum()))


fig, ax = plt.subplots(figsize=(6, 3.3))
ax.plot(pool_sizes, [pooled_perplexity(indices[:n]) for n in pool_sizes], "o-")
ax.axvline(pick(normal=32, quick=16), color="grey", ls=":", label="training batch size")
ax.axhline(vq_history["train/perplexity"][-1][1], color="tab:red", ls="--",
           label="training curve, last value (per batch)")
ax.set(xscale="log", xlabel="test images pooled", ylabel="perplexity",
       title="perplexity grows with the sample it is computed on")
ax.set_xticks(pool_sizes, [str(n) for n in pool_sizes])
ax.minorticks_off()
ax.legend()
plt.show()
train_last = vq_history["train/perplexity"][-1][1]
at_batch = pooled_perplexity(indices[:pick(normal=32, quick=16)])
say(f"At the training batch size the pooled test perplexity ({at_batch:.0f}) is close to the "
    f"training curve's last value ({train_last:.0f}); over all {len(indices)} test images it reaches "
    f"the histogram's {test_perplexity:.0f}. Compare perplexities only when they were computed over "
    "samples of the same size (and say which).",
    (abs(at_batch - train_last) < 0.15 * train_last, "at the batch size, close to the training curve"),
    (train_last < test_perplexity, "the training curve reads lower than the histogram's number"))

# %% [markdown]
# ## 3. An image is a grid of code indices
#
# `encode_to_indices` returns the integers themselves: a $32 \times 32$ grid per image
# (16 x 16 in quick mode), each cell one of the $K$ codes and standing for a $2 \times 2$ patch.
# Shown as a picture with one colour per code, the background of each image is (nearly) one
# flat colour and each shape a patchwork of the codes for its inside, its edges and its holes.
# Two surprises: the background is *not* the same code in every image, and there is a band
# of special codes along the border, two or three cells deep (the numbers under the picture
# count the outermost ring of it). Both come
# from the encoder, not the quantizer: its GroupNorm layers normalise each image with that image's own statistics, so "black" comes
# out as a slightly different vector depending on what else is in the picture, and the
# zero padding of the convolutions marks the border. This grid is all the decoder gets, and
# it is what the transformer of
# lecture 6 learns to write.

# %%
fig, axes = plt.subplots(2, 6, figsize=(12, 4.4))
for j in range(6):
    show_images(x_test[j:j + 1], nrow=1, ax=axes[0, j])
    axes[1, j].imshow(indices[j], cmap="nipy_spectral", vmin=0, vmax=vqvae.num_codes - 1,
                      interpolation="nearest")
    axes[1, j].set_axis_off()
axes[0, 0].set_title("image", loc="left")
axes[1, 0].set_title("code indices", loc="left")
plt.tight_layout()
plt.show()
print("the first image's grid, top-left corner:\n", indices[0, :5, :8].numpy())
# Open background: at least two cells from any shape and from the border of the grid.
h, w = indices.shape[1:]
inner = torch.zeros(h, w, dtype=torch.bool)
inner[2:-2, 2:-2] = True
open_bg = (F.max_pool2d((~background).float()[:, None], 5, 1, 2)[:, 0] == 0) & inner
ring = ~F.pad(torch.ones(h - 2, w - 2, dtype=torch.bool), (1, 1, 1, 1))
has_bg = open_bg.flatten(1).any(1)
main_code = [torch.mode(indices[i][open_bg[i]]).values for i in range(len(indices)) if has_bg[i]]
flat = [float((indices[i][open_bg[i]] == c).float().mean()) for i, c in zip(has_bg.nonzero()[:, 0].tolist(), main_code)]
ring_same = [float((indices[i][ring] == c).float().mean()) for i, c in zip(has_bg.nonzero()[:, 0].tolist(), main_code)]
flat, ring_same = flat or [float("nan")], ring_same or [float("nan")]   # quick mode: maybe no open background
say(f"Over the {len(main_code)} test images with open background, the most common code covers "
    f"{np.mean(flat):.0%} of it on average (at least {min(flat):.0%} in every image); those images use "
    f"{len(set(int(c) for c in main_code))} different main background codes, and on the outermost ring "
    f"of the grid the image's main background code appears in {np.mean(ring_same):.0%} of the cells.",
    (np.mean(flat) > 0.85, "the background of each image is (nearly) one flat colour"),
    (len(set(int(c) for c in main_code)) > 10, "the background is not the same code in every image"),
    (np.mean(ring_same) < 0.05, "a ring of special codes along the border"))

# %% [markdown]
# ## 4. Dead codes, and the EMA + restart fix
#
# Only the codes that some encoder vector chooses receive any gradient from the codebook
# term. A code that starts far from every encoder output is never chosen, never moves, and
# stays dead for the rest of training. If the *whole* codebook starts in a bad place, one or
# two codes win every vector and the model has a vocabulary of one word.
#
# Two remedies, both in `dlstudio_lite.quantize`:
#
# - **EMA codebook** (`quantizer="ema"`): after each batch, code $k$ moves to a running average of
#   the encoder vectors assigned to it, $N_k \leftarrow \gamma N_k + (1-\gamma) n_k$,
#   $m_k \leftarrow \gamma m_k + (1-\gamma) \sum_{i: k_i = k} z_i$, $e_k = m_k / N_k$ with
#   $\gamma = 0.99$. Used codes follow the data quickly and no learning rate is involved;
#   but an unused code still does not move.
# - **Restart** (`dead_code_steps=n`): a code unused for $n$ training steps is reset to a
#   random encoder vector of the current batch, where it will be chosen.
#
# The experiment: a small VQ-VAE whose 64 codes all start in a tight cluster far from the
# encoder outputs, trained three ways, with the same seed and data. The k-means start is
# switched off here (`kmeans_init=False`; on the command line `--no-kmeans-init
# --dead-code-steps 0` turns off both remedies), or it would simply overwrite the bad start.
# (32 x 32 images and a narrow model keep this section fast; the effect does not depend on
# the size.)

# %%
small_train = recipe("dead_code_demo").data_config().splits()[0]


@torch.no_grad()
def set_codebook(quantizer, codes):
    """Overwrite every code, keeping an EMA quantizer's statistics consistent (e = m / N)."""
    quantizer.codebook.copy_(codes)
    if hasattr(quantizer, "embed_sum"):
        quantizer.embed_sum.copy_(codes * quantizer.cluster_size[:, None])


class StepPrintingTrainer(Trainer):
    """A Trainer that prints the step number every 50 steps, on one line: progress that a
    saved notebook shows as well (a saved progress bar would show 0/300)."""

    def train_step(self, x):
        logs = super().train_step(x)
        if (self.step + 1) % 50 == 0:          # self.step counts the steps finished before this one
            print(f"{self.step + 1}/{self.total_steps}", end=" ", flush=True)
        return logs


def dead_code_run(quantizer, dead_code_steps):
    seed_everything(0)
    demo = recipe("dead_code_demo")   # dlstudio_lite/recipes.py
    model = demo.build_model(quantizer=quantizer, dead_code_steps=dead_code_steps)
    bad = 2.0 + 0.01 * torch.randn(model.num_codes, model.code_dim)   # one small, far-away cluster
    set_codebook(model.quantizer, bad)
    # progress=False: the step numbers printed on one line per run replace the bar
    trainer = StepPrintingTrainer(model, small_train, config=demo.train_config(progress=False))
    return model.eval(), trainer.fit()


runs = {}
for label, quantizer, idle in [("gradient codebook", "gradient", 0), ("EMA codebook", "ema", 0),
                               ("EMA + restart after 10 idle steps", "ema", 10)]:
    print(f"training: {label}, step", end=" ", flush=True)
    runs[label] = dead_code_run(quantizer, dead_code_steps=idle)
    print(f"... done, final perplexity {runs[label][1]['train/perplexity'][-1][1]:.1f}", flush=True)

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 3.5))
for label, (model, history) in runs.items():
    steps, values = zip(*history["train/perplexity"])
    axes[0].plot(steps, values, label=label)
    steps, values = zip(*history["train/recon"])
    axes[1].plot(steps, values, label=label)
axes[0].set_title("perplexity (64 codes), badly initialised codebook")
axes[1].set_title("reconstruction MSE")
axes[1].set_yscale("log")
for ax in axes:
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
# Outside the axes: inside, the legend would cover the gradient codebook's curve.
fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center", ncol=3, fontsize=8,
           bbox_to_anchor=(0.5, -0.02))
fig.tight_layout(rect=(0, 0.08, 1, 1))
plt.show()

# %% [markdown]
# Three different stories from the same bad start:
#
# - **Plain EMA** is the worst: the one or two codes that win the first batches move to the
#   encoder outputs, and all the others stay stranded in their far-away cluster for good.
# - The **gradient codebook** recovers, slowly: the commitment term drags the encoder outputs
#   towards the codes, into the cluster, where other codes start winning. The *encoder* moves
#   to the codebook rather than the codebook to the data.
# - **EMA + restart** revives the idle codes on real encoder vectors and reaches the highest
#   perplexity.
#
# How slowly, and how high, read off the curves:

# %%
def perplexity_curve(label):
    steps, values = zip(*runs[label][1]["train/perplexity"])
    return np.array(steps), np.array(values)


def first_step_reaching(label, fraction):
    """First logged step at which the perplexity reaches ``fraction`` of its final value."""
    steps, values = perplexity_curve(label)
    return int(steps[np.argmax(values >= fraction * values[-1])])


final = {label: perplexity_curve(label)[1][-1] for label in runs}
ema_max = perplexity_curve("EMA codebook")[1].max()
grad_at = {f: first_step_reaching("gradient codebook", f) for f in (0.5, 0.8)}
restart_at = first_step_reaching("EMA + restart after 10 idle steps", 0.9)
n_steps = int(perplexity_curve("gradient codebook")[0][-1])
say(f"Plain EMA never gets past a perplexity of {ema_max:.1f}. The gradient codebook needs "
    f"{grad_at[0.5]} steps to reach half of its final perplexity ({final['gradient codebook']:.0f}) and "
    f"{grad_at[0.8]} steps to reach 80% of it, of the {n_steps} it trains. EMA + restart "
    f"reaches 90% of its final {final['EMA + restart after 10 idle steps']:.0f} by step {restart_at}, the "
    "highest of the three.",
    (ema_max < 2.5, "plain EMA: one or two codes win, all the others stay stranded"),
    (grad_at[0.8] > 4 * restart_at, "the gradient codebook recovers slowly, restarts fast"),
    (final["EMA + restart after 10 idle steps"] == max(final.values()), "EMA + restart reaches the highest perplexity"))

# %% [markdown]
# (A common EMA initialisation bug, cluster sizes starting at 0, produces the same flat
# curve from a *good* codebook; the package starts them at 1. See
# [errata B9](../docs/ERRATA.md#b9).)
#
# ## 5. The lecture's claim: the VQ-VAE keeps the holes
#
# The shapes are rotated without interpolation, which leaves pinholes inside them (lecture
# section 9; `ShapesDataset(..., return_holes=True)` returns where they are). The lecture
# says a VQ-VAE reproduces them and a VAE blurs them away. A fair test needs the two models
# to get the same budget, so three models are compared on the same test images, all with
# the same encoder and decoder widths and 4,000 training steps:
#
# - the **VAE** of lecture 4 (checkpoint `vae_shapes`): a $16 \times 16$ grid of 16
#   Gaussian channels;
# - a **VQ-VAE on the same $16 \times 16$ grid** (checkpoint `vqvae16_shapes`): one of 512
#   codes per $4 \times 4$ patch;
# - the **VQ-VAE of section 2** on a $32 \times 32$ grid: one code per $2 \times 2$ patch.
#
# The widths are the same, but not the depth: going from $64 \times 64$ to a
# $32 \times 32$ grid takes one downsampling stage, to a $16 \times 16$ grid two, and each
# stage doubles the channels. So the finer-grid model has fewer layers and about a quarter
# of the parameters (the table below counts them). If it keeps more detail, that is in spite
# of being the smaller network, not because it is larger.
#
# "Same grid" is not yet "same information". The fair currency is **bits per image**: for
# the VAE, the KL of its posterior from the prior, in bits (what it costs to send $z$ to a
# receiver who knows the prior); for a VQ-VAE, the entropy of its code histogram in bits
# times the number of grid cells (what an ideal coder that knows only that histogram
# pays). `dlstudio_lite.evaluate.latent_rate` computes both.
#
# **When is a hole "recovered"?** For every hole pixel, take the *fill colour*: the mean
# true colour of its non-hole neighbours (3 x 3 window), i.e. the colour of the shape around
# it. The hole is recovered when (a) the reconstructed pixel is closer (Euclidean distance
# in RGB) to the true hole value than to that fill colour, and (b) the model did draw the
# shape around it: the mean of the reconstructed neighbours is closer to the fill colour
# than to the hole value. An observer then sees a hole in a shape. A model that smooths the
# hole over fails (a); a model that paints everything black fails (b). The share of hole
# pixels recovered is the **recall**.
#
# Recall alone can be fooled: a model that sprinkled dark pixels all over its shapes would
# hit many holes by chance. So we also count **false holes**: pixels inside a shape (no
# background pixel in their 3 x 3 window) that are *not* holes but that the model draws
# closer to black (what most holes show) than to their true colour. The **precision** is
# the share of drawn holes that are real, recovered / (recovered + false), and the
# **F-score** $2PR/(P+R)$ is high only when both are. We also report the **hole depth**: the
# position of the reconstructed hole pixel on the line from the fill colour (0) to the true
# hole value (1), averaged over hole pixels.

# %%
def fill_colour(x, holes):
    """Mean true colour of the non-hole 3x3 neighbours of every pixel: (B, 3, H, W), and the
    number of such neighbours (B, H, W)."""
    kernel = torch.ones(1, 1, 3, 3)
    kernel[..., 1, 1] = 0
    solid = (~holes).float().unsqueeze(1)                                  # (B, 1, H, W)
    total = F.conv2d(x * solid, kernel.expand(3, 1, 3, 3), padding=1, groups=3)
    count = F.conv2d(solid, kernel, padding=1)
    return total / count.clamp_min(1), count[:, 0]


def hole_scores(x, x_hat, holes):
    """Recall, precision and F-score of the holes, and mean hole depth (see the text above)."""
    fill, count = fill_colour(x, holes)
    fill_hat, _ = fill_colour(x_hat, holes)  # the reconstructed shape around each hole
    valid = holes & (count > 0)              # holes with at least one solid neighbour
    hole_seen = (x_hat - x).pow(2).sum(1) < (x_hat - fill).pow(2).sum(1)
    shape_seen = (fill_hat - fill).pow(2).sum(1) < (fill_hat - x).pow(2).sum(1)
    recovered = hole_seen & shape_seen & valid
    # False holes: solid pixels inside a shape, drawn closer to black than to their colour.
    background = (x.amax(1) < -0.99) & ~holes                              # (B, H, W)
    inside = F.max_pool2d(background.float()[:, None], 3, 1, 1)[:, 0] == 0
    solid = inside & ~holes
    false = solid & ((x_hat + 1).pow(2).sum(1) < (x_hat - x).pow(2).sum(1))   # black is -1
    n_rec, n_false = float(recovered.sum()), float(false.sum())
    recall = n_rec / float(valid.sum())
    precision = n_rec / (n_rec + n_false) if n_rec + n_false else float("nan")
    f_score = 2 * precision * recall / (precision + recall) if n_rec else 0.0
    direction = x - fill
    depth = ((x_hat - fill) * direction).sum(1) / direction.pow(2).sum(1).clamp_min(1e-6)
    return {"recovered": recall, "precision": precision, "F": f_score, "false holes": int(n_false),
            "solid pixels": int(solid.sum()), "depth": float(depth[valid].clamp(-1, 2).mean())}


seed_everything(0)
vae, _ = load_or_train("vae_shapes", train_set, test_set)
seed_everything(0)
vqvae16, _ = load_or_train("vqvae16_shapes", train_set, test_set)
models = {"VAE 16x16": vae, "VQ-VAE 16x16": vqvae16, "VQ-VAE 32x32": vqvae}
with torch.no_grad():
    x_vae = vae.reconstruct(x_test).clamp(-1, 1)     # decodes the posterior mean
    x_vq16 = vqvae16.reconstruct(x_test).clamp(-1, 1)
recs = {"VAE 16x16": x_vae, "VQ-VAE 16x16": x_vq16, "VQ-VAE 32x32": x_vq}

results = {}
for name, x_hat in recs.items():
    rate = latent_rate(models[name], test_set)
    results[name] = {"bits": rate["bits_per_image"], "PSNR (dB)": float(psnr(x_hat, x_test)),
                     "parameters": sum(p.numel() for p in models[name].parameters()),
                     **hole_scores(x_test, x_hat, holes_test)}
print(f"{len(x_test)} test images, {int(holes_test.sum())} hole pixels, "
      f"{results['VAE 16x16']['solid pixels']} solid pixels inside shapes")
print(f"{'':14s}{'parameters':>11s}{'bits/image':>11s}{'PSNR (dB)':>10s}{'recall':>8s}{'precision':>10s}"
      f"{'F':>6s}{'false holes':>12s}{'depth':>7s}")
for name, r in results.items():
    print(f"{name:14s}{r['parameters']:11,d}{r['bits']:11.0f}{r['PSNR (dB)']:10.2f}{r['recovered']:8.1%}"
          f"{r['precision']:10.1%}{r['F']:6.2f}{r['false holes']:12d}{r['depth']:7.2f}")

# %%
fig, axes = plt.subplots(1, 3, figsize=(13, 3.2))
names, colours = list(results), ["tab:orange", "tab:cyan", "tab:blue"]
for ax, (key, title, scale) in zip(axes, [("bits", "bits per image (latent rate)", 1),
                                          ("PSNR (dB)", "PSNR on the test images (dB)", 1),
                                          ("F", "holes: F-score of recall and precision (%)", 100)]):
    ax.bar(names, [scale * results[n][key] for n in names], color=colours)
    ax.set_title(title)
    ax.tick_params(axis="x", labelsize=8)
axes[2].set_ylim(0, 100)
plt.tight_layout()
plt.show()

# %% [markdown]
# Numbers are easier to trust next to pictures. Below, zoomed crops around the densest
# cluster of holes in a few test images: the input, the three models and the hole mask.
# `interpolation="nearest"` shows the pixels as they are.


# %%
def densest_window(holes, size):
    """Top-left corner of the size x size window holding the most hole pixels."""
    sums = F.avg_pool2d(holes[None, None].float(), size, stride=1)[0, 0]
    i = int(sums.flatten().argmax())
    return divmod(i, sums.shape[1])


crop = pick(normal=20, quick=12)
chosen = holes_test.flatten(1).sum(1).argsort(descending=True)[:4]
fig, axes = plt.subplots(len(chosen), 5, figsize=(11, 2.4 * len(chosen)))
for row, j in enumerate(chosen.tolist()):
    r, c = densest_window(holes_test[j], crop)
    panels = {"input": x_test[j], "VAE 16x16": x_vae[j], "VQ-VAE 16x16": x_vq16[j],
              "VQ-VAE 32x32": x_vq[j]}
    for col, (label, img) in enumerate(panels.items()):
        patch = img[:, r:r + crop, c:c + crop]
        axes[row, col].imshow(((patch + 1) / 2).clamp(0, 1).permute(1, 2, 0), interpolation="nearest")
        axes[row, col].set_title(label if row == 0 else "")
    axes[row, 4].imshow(holes_test[j, r:r + crop, c:c + crop], cmap="gray", interpolation="nearest")
    axes[row, 4].set_title("hole mask" if row == 0 else "")
    for ax in axes[row]:
        ax.set_axis_off()
plt.tight_layout()
plt.show()

# %% [markdown]
# **What the measurement says** (shipped checkpoints in normal mode; in quick mode all three
# models are barely trained, the numbers mean nothing and the checks are skipped):

# %%
vae_r, vq16_r, vq32_r = results["VAE 16x16"], results["VQ-VAE 16x16"], results["VQ-VAE 32x32"]
say(f"On the *same* $16 \\times 16$ grid the VQ-VAE is no better than the VAE: {vq16_r['PSNR (dB)']:.1f} dB "
    f"against {vae_r['PSNR (dB)']:.1f} dB, and both recover under 1% of the hole pixels "
    f"({vq16_r['recovered']:.1%} and {vae_r['recovered']:.1%}), although the VQ-VAE's codes carry about "
    f"{vq16_r['bits']:,.0f} bits per image against the VAE's {vae_r['bits']:,.0f}. Only the VQ-VAE on the "
    f"$32 \\times 32$ grid keeps the holes: recall {vq32_r['recovered']:.0%} and precision "
    f"{vq32_r['precision']:.0%} (F-score {vq32_r['F']:.2f}: of the {vq32_r['solid pixels']:,} solid "
    f"pixels inside shapes it draws only {vq32_r['false holes']} as holes), and {vq32_r['PSNR (dB)']:.1f} dB, "
    f"with about {vq32_r['bits']:,.0f} bits per image, {vq32_r['bits'] / vae_r['bits']:.0f} times the "
    f"VAE's rate, and with {vq32_r['parameters']:,} parameters against the 16 x 16 VQ-VAE's "
    f"{vq16_r['parameters']:,}.",
    (abs(vq16_r["PSNR (dB)"] - vae_r["PSNR (dB)"]) < 0.5, "on the same grid the VQ-VAE is no better than the VAE"),
    (max(vq16_r["recovered"], vae_r["recovered"]) < 0.01, "both recover under 1% of the hole pixels"),
    (vq32_r["recovered"] > 0.8 and vq32_r["precision"] > 0.9, "only the 32 x 32 VQ-VAE keeps the holes"),
    (vq32_r["parameters"] < vq16_r["parameters"], "the finer-grid model is the smaller network"))

# Does a looser definition of a drawn hole change the verdict? Count a pixel as drawn dark
# when it lies a quarter of the way from its colour towards the hole value.
fill, count = fill_colour(x_test, holes_test)
valid = holes_test & (count > 0)
to_hole = x_test - fill
depth = ((x_vq - fill) * to_hole).sum(1) / to_hole.pow(2).sum(1).clamp_min(1e-6)
background = (x_test.amax(1) < -0.99) & ~holes_test
solid = (F.max_pool2d(background.float()[:, None], 3, 1, 1)[:, 0] == 0) & ~holes_test
to_black = -1 - x_test
toward_black = ((x_vq - x_test) * to_black).sum(1) / to_black.pow(2).sum(1).clamp_min(1e-6)
hits, false = int((depth[valid] > 0.25).sum()), int((toward_black[solid] > 0.25).sum())
claim(holes_test.float().mean() < 0.01, "the holes are under 1% of the pixels", quick=True)
colour_rms = {name: float((x_hat - x_test).pow(2).sum(1)[solid].mean().sqrt() * 127.5) for name, x_hat in recs.items()}
say(f"With that looser rule the 32 x 32 VQ-VAE's recall rises to {hits / int(valid.sum()):.0%} and its "
    f"precision falls to {hits / max(hits + false, 1):.0%}: some of its speckle is dark, most of it is colour. "
    "The typical colour error of solid pixels inside shapes (RMS, 0-255 units) is about the same for the "
    "three models: " + ", ".join(f"{name} {v:.0f}" for name, v in colour_rms.items()) + ". So the finer "
    "grid buys the holes, not cleaner colour.",
    (hits / max(hits + false, 1) > 0.6, "with the looser rule precision stays well above chance"),
    (max(colour_rms.values()) < 1.3 * min(colour_rms.values()), "the colour error of solid pixels is about the same"))

# %% [markdown]
# So the lecture's claim holds in this form: **a VQ-VAE with a fine enough grid of codes
# keeps the pinholes; at the VAE's grid it blurs them just as the VAE does.** The holes are
# what a finer grid buys, not what quantisation buys on its own, and the finer-grid model
# buys them with fewer parameters but four times as many codes per image. (The holes are
# also a detail a model learns late: they are under 1% of the pixels, as the count above
# the table shows, so they carry a tiny share of the squared error, and colours and
# outlines come first.)
#
# Why can a finer grid of codes keep them? A code of the $32 \times 32$ grid stands for a
# $2 \times 2$ patch, and one of the 512 codes can come to mean "inside of a shape with a
# pinhole here"; the decoder receives that code exactly, without noise. A code of the
# $16 \times 16$ grid must describe a $4 \times 4$ patch, which has far more possible hole
# patterns than any codebook has codes, so the decoder draws the most common case, a solid
# patch. The VAE's decoder, besides, is trained on *noisy* latents
# ($z = \mu + \sigma \varepsilon$), so a pixel-sized detail whose position varies from image to
# image is not worth the KL price. A fair comparison at matched bits per image (the VAE
# given a latent as large as the finer VQ grid) is a good experiment to try; the appendix
# lecture on datasets compares the two models at matched rate.
#
# ## 6. Spot the bug
#
# Two bugs from the course's sources: one in the lecture's quantizer listing
# ([errata B1](../docs/ERRATA.md#b1)), one that a student project reports from its own first
# VQ-VAE ([errata B2](../docs/ERRATA.md#b2)). Both give tensors of the right shape and no error;
# only the results show them. To see the symptoms clearly we plug each buggy quantizer into
# the *trained* VQ-VAE above.
#
# Your job is to **fix** each one, not only to spot it: for each listing, write down the line
# you would change before you read on. [Exercise 5](../exercises/ex05_vqvae.ipynb), Question 3,
# hands you a quantizer with both bugs to repair (graded), and Question 4 builds a
# known-answer test that catches both: feed the K codebook vectors themselves in as an
# encoder output and a correct quantizer must return the indices 0, 1, ..., K-1.
#
# **Bug A.** The lecture's `VectorQuantizer` listing picks the code index with

# %%
def quantize_listing_a(z_e, codebook):
    """(B, D, h, w) -> (B, D, h, w) quantized, and the indices (B*h*w,)."""
    b, d, h, w = z_e.shape
    flat = z_e.permute(0, 2, 3, 1).reshape(-1, d)
    distances = (flat.pow(2).sum(1, keepdim=True) + codebook.pow(2).sum(1)
                 - 2 * flat @ codebook.T)
    idx = distances.argmax(dim=1)
    return codebook[idx].view(b, h, w, d).permute(0, 3, 1, 2), idx


# %% [markdown]
# Can you see it, and fix it, before running the next cell? The cell decodes the test images
# with this quantizer and with the package's.

# %%
@torch.no_grad()
def decode_with(quantize_fn, x):
    z_e = vqvae.encode(x)
    z_q, idx = quantize_fn(z_e, vqvae.quantizer.codebook)
    error = float((z_q - z_e).pow(2).sum(1).mean())
    return vqvae.decode(z_q).clamp(-1, 1), idx, error


def package_quantize(z_e, codebook):
    vq = vqvae.quantizer(z_e)    # eval mode: no codebook update
    return vq.quantized, vq.indices.flatten()


x_few = x_test[:8]
bug = {}
for label, fn in {"package": package_quantize, "listing A": quantize_listing_a}.items():
    out, idx, error = decode_with(fn, x_few)
    bug[label] = {"codes": len(idx.unique()), "error": error, "PSNR": float(psnr(out, x_few))}
    print(f"{label:10s} distinct codes used: {bug[label]['codes']:4d}   "
          f"mean ||z_e - z_q||^2: {error:10.3f}   PSNR: {bug[label]['PSNR']:6.2f} dB")
    show_images(out, nrow=8, title=f"decoded with the {label} quantizer", scale=1.0)
    plt.show()

# %%
a, ok = bug["listing A"], bug["package"]
say(f"The symptom: {a['codes']} codes for everything (the package's quantizer uses {ok['codes']} on the "
    f"same 8 images), a quantization error {a['error'] / ok['error']:.0f} times larger, and images that "
    f"are not the inputs ({a['PSNR']:.1f} dB against {ok['PSNR']:.1f} dB).",
    (a["codes"] < ok["codes"] / 5, "a handful of codes for everything"),
    (a["error"] > 100 * ok["error"], "a quantization error orders of magnitude larger"),
    (a["PSNR"] < ok["PSNR"] - 10, "images that are not the inputs"))

# %% [markdown]
# The listing takes the **argmax** of the distances, the *farthest* code, and the farthest
# code from almost any vector is one of the few codes at the edge of the codebook. The fix
# is `argmin`. During training this bug raises no error either; the loss just cannot fall
# the way it should, because the decoder receives codes that keep where the shapes are
# (their outlines survive in the strip above) but almost nothing of their colours.
#
# **Bug B.** The student slides describe a VQ-VAE whose first version reconstructed badly
# until they fixed one step of its quantizer. (The lecture's own listing gets this line
# right.) Here is a quantizer with the same kind of mistake. Can you find the line?

# %%
def quantize_listing_b(z_e, codebook):
    b, d, h, w = z_e.shape
    flat = z_e.reshape(-1, d)
    idx = torch.cdist(flat, codebook).argmin(dim=1)
    return codebook[idx].view(b, h, w, d).permute(0, 3, 1, 2), idx


# %%
z_e = vqvae.encode(x_few[:1]).detach()
print("the vector of latent pixel (0, 0):       ", z_e[0, :4, 0, 0].numpy().round(2), "...")
print("row 0 of z_e.reshape(-1, D) instead holds:", z_e.reshape(-1, z_e.shape[1])[0, :4].numpy().round(2), "...")
out, idx, error = decode_with(quantize_listing_b, x_few)
psnr_b = float(psnr(out, x_few))
print(f"listing B  distinct codes used: {len(idx.unique()):4d}   mean ||z_e - z_q||^2: {error:10.3f}   "
      f"PSNR: {psnr_b:6.2f} dB")
claim(psnr_b < bug["package"]["PSNR"] - 10, "the decoded images fall apart",
      detail=f"listing B {psnr_b:.1f} dB, package {bug['package']['PSNR']:.1f} dB")
fig, axes = plt.subplots(1, 3, figsize=(9, 3))
show_images(x_few[:1], nrow=1, ax=axes[0], title="input")
axes[1].imshow(vqvae.encode_to_indices(x_few[:1])[0], cmap="nipy_spectral", interpolation="nearest")
axes[1].set_title("code grid (package)")
axes[2].imshow(idx.view(-1, *z_e.shape[2:])[0], cmap="nipy_spectral", interpolation="nearest")
axes[2].set_title("code grid (listing B)")
for ax in axes[1:]:
    ax.set_axis_off()
plt.show()
show_images(out, nrow=8, title="decoded with the listing B quantizer", scale=1.0)
plt.show()

# %% [markdown]
# In memory a `(B, D, h, w)` tensor stores channel 0 of every pixel, then channel 1, ... so
# `reshape(-1, D)` cuts rows out of *one channel* across neighbouring pixels: the quantizer
# snaps vectors that do not exist. The code grid no longer follows the shapes and the
# decoded images fall apart. The fix is `z_e.permute(0, 2, 3, 1).reshape(-1, D)`
# (BCHW -> BHWC first), which the package does, as this check confirms:

# %%
with torch.no_grad():
    rows = vqvae.encode(x_few).permute(0, 2, 3, 1).reshape(-1, vqvae.code_dim)
    reference = torch.cdist(rows, vqvae.quantizer.codebook).argmin(dim=1)
same = torch.equal(vqvae.encode_to_indices(x_few).flatten(), reference)
print("package indices == per-pixel argmin:", same)
claim(same, "the package permutes before it flattens, as this check confirms", quick=True)

# %% [markdown]
# ## Summary
#
# - Eq. 22 has three terms and each trains different parameters: reconstruction -> decoder
#   and (via the straight-through estimator) encoder; codebook term -> codebook only;
#   commitment term -> encoder only. `sg[.]` is `.detach()`, and
#   `z_q = z_e + (e - z_e).detach()` passes the decoder's gradient around the `argmin`.
# - Perplexity and the codebook-usage histogram tell how much of the vocabulary is used.
# - Codes that are never chosen never learn. An EMA codebook moves used codes quickly;
#   restarting idle codes on encoder vectors revives the dead ones.
# - On the shapes, a VQ-VAE with a $32 \times 32$ grid keeps the pinholes that the VAE smooths
#   over, with few false holes (recall and precision both count); on the VAE's own
#   $16 \times 16$ grid it blurs them just the same. Compare models at the same grid, report
#   bits per image, and say how else the models differ (here: depth and parameters).
# - `argmax` instead of `argmin`, and flattening without moving channels last, both run
#   silently; check a quantizer against a case whose answer you know.
# - A perplexity depends on how many images it pools: per batch it is lower than over the
#   test set. The parameter count leaves out an EMA codebook, which lives in buffers.
#
# ## Questions to think about
#
# 1. The straight-through estimator copies the decoder's gradient from $z_q$ to $z_e$ as if
#    quantizing were the identity. When is that a good approximation, and what does the
#    commitment term do to make it better?
# 2. An EMA codebook is not trained by the optimizer at all. What would go wrong if you
#    also gave it to the optimizer *and* kept the EMA update?
# 3. The $32 \times 32$ VQ-VAE kept the pinholes; the $16 \times 16$ one, with the same 512
#    codes, did not. Count how many different hole patterns a $2 \times 2$ and a
#    $4 \times 4$ patch can hold, and explain the result with that count.
# 4. Two VQ-VAEs report perplexities of 170 and 260. What do you need to know before you
#    conclude that the second uses its codebook better?
# 5. The $32 \times 32$ model is also the smaller network (section 5). Design a comparison
#    in which grid size is the only difference. What would you hold fixed?
#
# **Next:** [exercise 5](../exercises/ex05_vqvae.ipynb) asks you to implement the VQ-VAE loss and the
# straight-through estimator and to verify with autograd which parameters each term trains.
# Lecture 6 puts this VQ-VAE inside a GAN (VQGAN) and trains a transformer to write new
# code grids.

# %%
print(summary())   # how many of this lecture's sentences about its results were checked
