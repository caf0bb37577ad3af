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
# # Lecture 1: The codebook
#
# A *codebook* is a small, fixed vocabulary of vectors. A codebook-based generative model
# (VQ-VAE, VQGAN) lets a convolutional encoder describe an image with continuous feature
# vectors and then replaces every one of them by the closest vocabulary entry. The image
# becomes a grid of integers, much as a sentence becomes a sequence of token ids.
#
# **What you will learn**
#
# - what a codebook is: $K$ vectors of dimension $D$, and how it turns an encoder's
#   `(B, C, H, W)` feature map into a `(B, H, W)` grid of integer tokens;
# - nearest-neighbour quantization, and the Voronoi cells it carves out of the space;
# - how to quantize a feature map correctly in PyTorch, step by step with shapes, and
#   two bugs that run without any error message: flattening without moving the
#   channels last, and taking `argmax` instead of `argmin`;
# - how to fit a codebook with k-means and read an image as a grid of tokens;
# - how quantization error and *perplexity* (codebook usage) change with $K$;
# - why snapping vectors to a codebook protects attention from small input noise,
#   and where that protection ends.

# %%
# %matplotlib inline
import math

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F

from tqdm.auto import tqdm

from dlstudio_lite import pick, quick_mode, recipe, seed_everything
from dlstudio_lite.claims import claim, say, summary
from dlstudio_lite.plot import interactive

seed_everything(0)
# Every tensor in this notebook is small: one CPU thread is faster than several, because
# handing tiny operations between threads costs more than it saves.
torch.set_num_threads(1)
print("quick mode:", quick_mode())

# %% [markdown]
# ## 1. What a codebook is
#
# A codebook is a matrix $E \in \mathbb{R}^{K \times D}$ whose rows $e_0, \dots, e_{K-1}$
# are the *code vectors*. Take an encoder that maps a $64 \times 64 \times 3$ image to a
# feature map of shape $(C, h, w) = (256, 16, 16)$. Read the feature map as $h \cdot w = 256$
# vectors $z_{ij} \in \mathbb{R}^{C}$, one per spatial position, each describing a patch of the
# input. With $D = C$ each of them is replaced by its nearest code vector:
#
# $$
# k_{ij} = \operatorname*{arg\,min}_{k \in \{0,\dots,K-1\}} \lVert z_{ij} - e_k \rVert_2^2,
# \qquad z^{q}_{ij} = e_{k_{ij}} .
# $$
#
# Two things come out: the quantized feature map $z^q$ (same shape as the input, fed to the
# decoder) and the integer grid $k$ of shape $(h, w)$: the image written as tokens.
# The lecture writes the same rule as a one-hot posterior $q(z = k \mid x)$ that puts all its
# mass on the closest code.
#
# Computing all $N \times K$ squared distances one by one would build an $(N, K, D)$ tensor.
# Expanding the square avoids that:
#
# $$
# \lVert z - e \rVert^2 = \lVert z \rVert^2 - 2\, z \cdot e + \lVert e \rVert^2 ,
# $$
#
# a column of $\lVert z \rVert^2$, one matrix product $Z E^\top$ and a row of $\lVert e \rVert^2$.


# %%
def squared_distances(z, codebook):
    """z: (N, D), codebook: (K, D) -> (N, K) squared Euclidean distances."""
    return z.pow(2).sum(1, keepdim=True) - 2 * z @ codebook.T + codebook.pow(2).sum(1)


def nearest_code(z, codebook):
    """z: (N, D), codebook: (K, D) -> (N,) index of the closest code vector."""
    return squared_distances(z, codebook).argmin(dim=1)


# torch.cdist computes the same distances the slow, obvious way: a check of the algebra.
z_check, e_check = torch.randn(100, 5), torch.randn(7, 5)
matches_cdist = torch.allclose(squared_distances(z_check, e_check), torch.cdist(z_check, e_check) ** 2, atol=1e-4)
print("matches torch.cdist:", matches_cdist)
claim(matches_cdist, "the expanded form computes the same distances as torch.cdist", quick=True)

# %% [markdown]
# The expanded form has one weakness. When $z$ is (almost) equal to a code, the three terms
# are large numbers that nearly cancel, and floating-point rounding leaves a small error of
# either sign. The distance from each code to *itself* should be exactly zero:

# %%
codes_far = 10 + torch.randn(1000, 16)      # vectors far from the origin: large norms
self_d2 = squared_distances(codes_far, codes_far).diagonal()
print(f"distance of a code to itself: smallest {self_d2.min():.1e}, largest {self_d2.max():.1e}, "
      f"negative in {(self_d2 < 0).float().mean():.0%} of the codes")
# The same computation in half precision (16-bit floats), converted back for comparison.
self_d2_half = squared_distances(codes_far.half(), codes_far.half()).diagonal().float()
cancellation_ratio = (self_d2_half.abs().max() / self_d2.abs().max()).item()
between_codes = squared_distances(codes_far, codes_far).median().item()

# %% [markdown]
# The errors are tiny next to the squared distances between *different* codes (around
# $2 \cdot 16 = 32$ here), so `argmin` is not affected. Two consequences are worth knowing:
# clamp at zero before taking a square root (`d2.clamp(min=0).sqrt()`, or a NaN appears),
# and keep these distances in 32-bit floats. The next cell measures the same cancellation
# in half precision (16-bit floats, whose rounding step is $2^{13} = 8192$ times coarser);
# there the squared norms can also overflow, which is why the package switches mixed
# precision off inside its quantizer ([errata B11](../docs/ERRATA.md#b11)).

# %%
say(f"In half precision the distance of a code to itself is off by up to {self_d2_half.abs().max():.2f}, "
    f"about {cancellation_ratio:,.0f} times the largest 32-bit error (the typical squared distance between "
    f"two different codes is {between_codes:.0f}).",
    (cancellation_ratio > 300, "half precision makes the cancellation hundreds to thousands of times larger"),
    (self_d2.abs().max() < 0.01 * between_codes, "in 32-bit floats the errors are tiny next to the distances between codes"))

# %% [markdown]
# ## 2. Quantizing points in the plane
#
# With $D = 2$ everything can be drawn. Below are points from five blobs and a codebook of
# $K = 8$ vectors. Colouring every location of a dense grid by its nearest code shows the
# *Voronoi cells*: all points in one cell are replaced by the same code vector (the star).
#
# A codebook drawn at random can waste codes: cells that hold little or no data, blobs split
# or lumped together. A codebook is *learned* so that codes sit where the data is. The
# classic way is **k-means** (Lloyd's algorithm): alternate between
#
# 1. assigning every vector to its nearest code (exactly the quantization step above), and
# 2. moving each code to the mean of the vectors assigned to it.
#
# Neither step can raise the quantization error. The EMA codebook update of the VQ-VAE
# (lecture 5) is an online, mini-batch version of the same two steps. The figure puts a
# random codebook (left) next to one fitted by k-means (right).

# %%
centres = torch.tensor([[-2.0, -1.0], [0.0, 2.2], [2.2, -1.6], [2.6, 1.4], [-2.6, 2.0]])
points = centres[torch.randint(0, len(centres), (pick(normal=2000, quick=600),))]
points = points + 0.55 * torch.randn_like(points)


def voronoi_cells(codebook, lim=4.5, res=300):
    """Label a res x res grid over [-lim, lim]^2 with the nearest code: (res, res) long."""
    g = torch.linspace(-lim, lim, res)
    gy, gx = torch.meshgrid(g, g, indexing="ij")
    grid = torch.stack([gx.flatten(), gy.flatten()], dim=1)
    return nearest_code(grid, codebook).reshape(res, res)


def plot_voronoi(codebook, pts, ax, title="", lim=4.5):
    cells = voronoi_cells(codebook, lim)
    # Cell borders: grid locations whose right or upper neighbour belongs to another code.
    border = torch.zeros_like(cells, dtype=torch.bool)
    border[:, :-1] |= cells[:, :-1] != cells[:, 1:]
    border[:-1, :] |= cells[:-1, :] != cells[1:, :]
    extent = (-lim, lim, -lim, lim)
    ax.imshow(cells % 20, cmap="tab20", vmin=0, vmax=19, origin="lower", extent=extent, alpha=0.5,
              interpolation="nearest")
    ax.imshow(np.ma.masked_where(~border.numpy(), border.numpy()), cmap="gray_r", vmin=0, vmax=1,
              origin="lower", extent=extent, interpolation="nearest")
    ax.scatter(pts[:, 0], pts[:, 1], s=3, c="k", alpha=0.35)
    ax.scatter(codebook[:, 0], codebook[:, 1], marker="*", s=220, c="white", edgecolors="k", zorder=3)
    ax.set(xlim=(-lim, lim), ylim=(-lim, lim), title=title, xticks=[], yticks=[])


def quantization_error(z, codebook):
    """Mean squared distance from each vector to its code: the price of quantizing."""
    return squared_distances(z, codebook).min(dim=1).values.mean().item()


def kmeans(x, num_codes, iters=20, seed=0):
    """Lloyd's k-means. x: (N, D) -> codebook (num_codes, D)."""
    g = torch.Generator().manual_seed(seed)
    # Start on K *different* data vectors: in image data many patches are identical
    # (plain background), and codes that start on the same spot stay together.
    distinct = torch.unique(x, dim=0)
    codebook = distinct[torch.randperm(len(distinct), generator=g)[:num_codes]].clone()
    for _ in range(iters):
        idx = nearest_code(x, codebook)
        sums = torch.zeros_like(codebook).index_add_(0, idx, x)
        counts = torch.bincount(idx, minlength=num_codes).unsqueeze(1)
        # A code that attracted no vector keeps its place instead of dividing by zero.
        codebook = torch.where(counts > 0, sums / counts.clamp(min=1), codebook)
    return codebook


random_codebook = 2.0 * torch.randn(8, 2)
learned_codebook = kmeans(points, 8)
fig, axes = plt.subplots(1, 2, figsize=(9, 4.5))
plot_voronoi(random_codebook, points, axes[0],
             f"random codebook, K=8\nquantization error {quantization_error(points, random_codebook):.2f}")
plot_voronoi(learned_codebook, points, axes[1],
             f"k-means codebook, K=8\nquantization error {quantization_error(points, learned_codebook):.2f}")
plt.show()
claim(quantization_error(points, learned_codebook) < quantization_error(points, random_codebook),
      "the k-means codebook quantizes the points with a smaller error than the random one")

# %% [markdown]
# ## 3. Quantizing an encoder's feature map, step by step
#
# A convolutional encoder returns a tensor of shape `(B, C, H, W)`: channels *second*.
# The vectors to quantize run along the channel axis, one per `(b, h, w)` position.
# The recipe:
#
# | step | operation | shape |
# | --- | --- | --- |
# | 1 | encoder output `z_e` | `(B, C, H, W)` |
# | 2 | move channels last: `permute(0, 2, 3, 1)` | `(B, H, W, C)` |
# | 3 | one row per position: `reshape(-1, C)` | `(N, C)`, `N = B*H*W` |
# | 4 | squared distances to all codes | `(N, K)` |
# | 5 | `argmin` over codes | `(N,)` integers |
# | 6 | look the codes up: `codebook[indices]` | `(N, C)` |
# | 7 | undo steps 3 and 2 | `(B, C, H, W)` |
#
# Here it is on a small random feature map, printing each shape.

# %%
B, C, H, W, K = 2, 3, 4, 5, 6
z_e = torch.randn(B, C, H, W)
codebook = torch.randn(K, C)

z_bhwc = z_e.permute(0, 2, 3, 1)                     # step 2
flat = z_bhwc.reshape(-1, C)                         # step 3
d2 = squared_distances(flat, codebook)               # step 4
indices = d2.argmin(dim=1)                           # step 5
z_q_flat = codebook[indices]                         # step 6
z_q = z_q_flat.reshape(B, H, W, C).permute(0, 3, 1, 2)  # step 7
tokens = indices.reshape(B, H, W)

for name, t in [("z_e", z_e), ("permuted", z_bhwc), ("flat", flat), ("distances", d2),
                ("indices", indices), ("looked up", z_q_flat), ("z_q", z_q), ("tokens", tokens)]:
    print(f"{name:>10}: {tuple(t.shape)}")

# %% [markdown]
# A spot check at one position: the vector at `(b, h, w) = (1, 2, 3)` is `z_e[1, :, 2, 3]`
# (all channels at one place). Its nearest code, found by brute force, must be the token
# stored there, and the quantized map must hold that code vector.

# %%
b, h, w = 1, 2, 3
vec = z_e[b, :, h, w]
brute = ((codebook - vec) ** 2).sum(1).argmin().item()
print("token at (1, 2, 3):", tokens[b, h, w].item(), "| brute-force nearest code:", brute)
print("z_q holds that code:", torch.equal(z_q[b, :, h, w], codebook[brute]))
claim(tokens[b, h, w].item() == brute and torch.equal(z_q[b, :, h, w], codebook[brute]),
      "the token stored at (1, 2, 3) is the brute-force nearest code, and z_q holds it", quick=True)


# %% [markdown]
# The same steps as one reusable function (the package's `VectorQuantizer` does this,
# plus the losses and the gradient trick of lecture 5):


# %%
def quantize(z_e, codebook):
    """z_e: (B, C, H, W), codebook: (K, C) -> (z_q (B, C, H, W), tokens (B, H, W))."""
    B, C, H, W = z_e.shape
    flat = z_e.permute(0, 2, 3, 1).reshape(-1, C)
    indices = nearest_code(flat, codebook)
    z_q = codebook[indices].reshape(B, H, W, C).permute(0, 3, 1, 2)
    return z_q, indices.reshape(B, H, W)


# %% [markdown]
# ### Pitfall: forgetting the permute
#
# `z_e.reshape(-1, C)` *also* gives an `(N, C)` tensor, so every later shape matches and
# nothing complains. But in memory a `(B, C, H, W)` tensor stores channel 0 of all pixels,
# then channel 1 of all pixels, and so on. Cutting that into rows of length $C$ groups
# neighbouring *pixels of one channel*, not the channels of one pixel. (A student project
# in the course's sources lost its first VQ-VAE to this bug: [errata B2](../docs/ERRATA.md#b2).)

# %%
print("vector at pixel (0, 0):      ", z_e[0, :, 0, 0])
print("row 0 of reshape(-1, C):     ", z_e.reshape(-1, C)[0])
print("channel 0 at pixels (0, 0:3):", z_e[0, 0, 0, :3])

# %% [markdown]
# To see the damage, build a feature map whose vectors *are* code vectors (plus a little
# noise), so the right answer is known: the tokens we put in. The correct recipe gets them
# all back; the version without the permute gets roughly one in $K$ by luck.

# %%
true_tokens = torch.randint(0, K, (B, H, W))
z_known = codebook[true_tokens].permute(0, 3, 1, 2) + 0.05 * torch.randn(B, C, H, W)

good_tokens = quantize(z_known, codebook)[1]
bad_tokens = nearest_code(z_known.reshape(-1, C), codebook).reshape(B, H, W)  # no permute

fig, axes = plt.subplots(1, 3, figsize=(9, 2.6))
for ax, t, title in [(axes[0], true_tokens, "tokens put in"),
                     (axes[1], good_tokens, f"permute first: {(good_tokens == true_tokens).float().mean():.0%} right"),
                     (axes[2], bad_tokens, f"no permute: {(bad_tokens == true_tokens).float().mean():.0%} right")]:
    ax.imshow(t[0], cmap="tab10", vmin=0, vmax=9)
    ax.set(title=title, xticks=[], yticks=[])
plt.show()
good_share, bad_share = (good_tokens == true_tokens).float().mean().item(), (bad_tokens == true_tokens).float().mean().item()
claim(good_share == 1.0, "the correct recipe gets all the tokens back", quick=True)
claim(bad_share < 0.5, "the version without the permute gets only a few right, by luck",
      detail=f"{bad_share:.0%} right")

# %% [markdown]
# ### Pitfall: `argmax` instead of `argmin`
#
# The lecture's listing of the quantizer picks codes with `argmax` over the *distances*;
# that selects the **farthest** code, the worst possible replacement. Again no error is
# raised ([errata B1](../docs/ERRATA.md#b1)). In the plane the mistake is easy to see: each
# arrow should point to the nearest star.

# %%
few = points[torch.randperm(len(points))[:6]]
d2_few = squared_distances(few, learned_codebook)
near, far = d2_few.argmin(1), d2_few.argmax(1)

fig, ax = plt.subplots(figsize=(4.8, 4.8))
plot_voronoi(learned_codebook, points[:0], ax, "argmin (green) vs argmax (red)")
for p, i, j in zip(few, near, far):
    ax.annotate("", learned_codebook[i], p, arrowprops=dict(arrowstyle="->", color="green", lw=2.5))
    ax.annotate("", learned_codebook[j], p, arrowprops=dict(arrowstyle="->", color="red", alpha=0.7))
ax.scatter(few[:, 0], few[:, 1], c="k", s=15, zorder=4)
plt.show()
print(f"mean squared error with argmin: {d2_few.min(1).values.mean():.2f}, "
      f"with argmax: {d2_few.max(1).values.mean():.2f}")

# %% [markdown]
# ### Cross-check with the package
#
# `dlstudio_lite.quantize.VectorQuantizer` is the trainable module used from lecture 5 on.
# Loaded with the same codebook, it must pick the same tokens as the plain function above.
# Load it with `load_codebook`: a quantizer starts its codebook by k-means on the first
# training batch unless it is told that it already has one (lecture 5 explains why), and
# writing into `vq.codebook` directly would let that start overwrite our codes.

# %%
from dlstudio_lite.quantize import VectorQuantizer, perplexity  # noqa: E402

vq = VectorQuantizer(num_codes=K, code_dim=C)
vq.load_codebook(codebook)
with torch.no_grad():
    out = vq(z_e)
same_tokens, same_map = torch.equal(out.indices, tokens), torch.allclose(out.quantized, z_q, atol=1e-6)
print("same tokens as the plain function:", same_tokens)
print("same quantized map:               ", same_map)
claim(same_tokens and same_map, "the package's quantizer picks the same tokens (and the same "
      "quantized map) as the plain function", quick=True)

# %% [markdown]
# ## 4. An image as a grid of tokens
#
# Now a real image from the course's shapes dataset (coloured shapes on a dark background).
# A trained encoder is not needed to see the idea: cutting the image into $2 \times 2$
# patches and stacking each patch's $2 \cdot 2 \cdot 3 = 12$ values along the channel axis
# already gives a `(B, 12, H/2, W/2)` feature map. `F.pixel_unshuffle` does exactly that,
# and `F.pixel_shuffle` puts the patches back. That pair plays "encoder" and "decoder";
# k-means over the patch vectors plays the learned codebook.

# %%
from dlstudio_lite.data import ShapesDataset, denormalize  # noqa: E402

image_size, patch = 32, 2
# 1,024 small images (the last 200 are the test split); generated once, then cached on disk.
# How many of them k-means fits, and for how many iterations: the recipe kmeans_patches
# (dlstudio_lite/recipes.py; quick mode runs its quick variant).
KMEANS = recipe("kmeans_patches")
train_images = ShapesDataset("train", image_size=image_size, num_images=1024).tensors(KMEANS.data["num_images"])
test_images = ShapesDataset("test", image_size=image_size, num_images=1024).tensors(16)
print("images:", tuple(train_images.shape), "values in", (train_images.min().item(), train_images.max().item()))

def to_features(x):
    """The stand-in encoder: (B, 3, H, W) -> (B, 3*patch*patch, H/patch, W/patch)."""
    return F.pixel_unshuffle(x, patch)


def to_image(z):
    """The stand-in decoder, the exact inverse of to_features."""
    return F.pixel_shuffle(z, patch)



def patch_vectors(x):
    """(B, 3, H, W) -> (N, 3*patch*patch), one row per patch (channels-last first!)."""
    z = to_features(x)
    return z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])


K_img = 64
print(f"fitting a {K_img}-code codebook to {len(patch_vectors(train_images)):,} patches by k-means ...")
image_codebook = kmeans(patch_vectors(train_images), K_img, iters=KMEANS.train["steps"])
z_q_img, img_tokens = quantize(to_features(test_images), image_codebook)
recon = to_image(z_q_img)
print("feature map:", tuple(to_features(test_images).shape), "-> tokens:", tuple(img_tokens.shape))

# %%
n_show = 4
fig, axes = plt.subplots(n_show, 3, figsize=(7, 2.3 * n_show))
for r in range(n_show):
    axes[r, 0].imshow(denormalize(test_images[r]).permute(1, 2, 0))
    axes[r, 1].imshow(img_tokens[r], cmap="nipy_spectral", vmin=0, vmax=K_img - 1)
    axes[r, 2].imshow(denormalize(recon[r]).clamp(0, 1).permute(1, 2, 0))
for ax, title in zip(axes[0], ["image", f"tokens (K={K_img})", "decoded from tokens"]):
    ax.set_title(title)
for ax in axes.flat:
    ax.set(xticks=[], yticks=[])
plt.tight_layout()
plt.show()

# %% [markdown]
# The same token grid, with the integers written in. This is the picture to keep in mind
# for the rest of the course: a $32 \times 32$ colour image has become $16 \times 16 = 256$
# numbers from $\{0, \dots, 63\}$. In lecture 6 a transformer will learn to *write* such grids.

# %%
is_background = ~(to_features(test_images[:1]) > -1).any(dim=1)[0]      # (16, 16): all-black patch
background_tokens = img_tokens[0][is_background].unique()
shape_tokens = img_tokens[0][~is_background].unique()
say(f"In image 0 all {int(is_background.sum())} background patches share "
    f"{'one token' if len(background_tokens) == 1 else f'{len(background_tokens)} tokens'}; "
    f"its {int((~is_background).sum())} shape patches use {len(shape_tokens)} others.",
    (len(background_tokens) == 1, "background patches all share one token"))
fig, ax = plt.subplots(figsize=(6.5, 6.5))
ax.imshow(img_tokens[0], cmap="nipy_spectral", vmin=0, vmax=K_img - 1, alpha=0.6)
for (i, j), t in np.ndenumerate(img_tokens[0].numpy()):
    ax.text(j, i, str(t), ha="center", va="center", fontsize=7)
ax.set(xticks=[], yticks=[], title="image 0 as integer tokens")
plt.show()

# %% [markdown]
# What did k-means learn? Each code is a vector of $2 \cdot 2 \cdot 3 = 12$ numbers, so the
# stand-in decoder `to_image` turns it back into a $2 \times 2$ patch of RGB pixels. Left: all
# 64 codes as tiles, sorted from the most used (top left) to the least used on the
# training patches. Right: how many patches each code stands for, each bar in its code's
# average colour.

# %%
code_tiles = denormalize(to_image(image_codebook.view(K_img, -1, 1, 1))).clamp(0, 1)  # (K, 3, 2, 2)
train_tokens = nearest_code(patch_vectors(train_images), image_codebook)
code_counts = torch.bincount(train_tokens, minlength=K_img)
order = code_counts.argsort(descending=True)
tiles = torch.ones(8, 8, 3, 3, 3)                      # 8 x 8 tiles, 2 x 2 pixels + a white gap
tiles[:, :, :, :2, :2] = code_tiles[order].view(8, 8, 3, 2, 2)
tile_image = tiles.permute(0, 3, 1, 4, 2).reshape(24, 24, 3)[:-1, :-1]

fig, axes = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw=dict(width_ratios=[1, 1.7]))
axes[0].imshow(tile_image, interpolation="nearest")
axes[0].set(xticks=[], yticks=[], title=f"the {K_img} codes as 2x2 RGB patches\n(sorted by use, row by row)")
axes[1].bar(range(K_img), code_counts[order].numpy(), width=0.85,
            color=code_tiles[order].mean(dim=(2, 3)).numpy(), edgecolor="0.6", linewidth=0.5)
axes[1].set(yscale="log", xlabel="code rank (same order as the tiles)", ylabel="patches (log scale)",
            title=f"code usage on {len(train_tokens):,} training patches")
plt.tight_layout()
plt.show()
# A tile is "one colour" when its four pixels differ by less than 0.1 in every channel.
one_colour = (code_tiles.amax(dim=(2, 3)) - code_tiles.amin(dim=(2, 3))).amax(dim=1)[order] < 0.1
first_tile_black = code_tiles[order[0]].max().item() < 0.05
say(f"The first tile is plain black: the background code, used {code_counts[order[0]] / code_counts[order[1]]:.0f} "
    f"times as often as the next one (note the log scale). Of the next 16 codes, {int(one_colour[1:17].sum())} are "
    f"whole patches of one colour, the insides of shapes; of the last 32, "
    f"{'none is' if not one_colour[-32:].any() else f'only {int(one_colour[-32:].sum())} are'}: "
    "further down two-tone tiles take over, pieces of edges between a shape and the background "
    "(or a pinhole inside a shape).",
    (first_tile_black and code_counts[order[0]] > 10 * code_counts[order[1]],
     "the most used code is plain black, used far more than any other"),
    (one_colour[1:17].float().mean() > one_colour[-32:].float().mean(), "one-colour tiles come first, two-tone tiles further down"))

# %% [markdown]
# The codebook is a vocabulary of small image pieces, and how often each piece occurs is
# very uneven; section 5 puts a number on that.

# %% [markdown]
# ## 5. How big should the codebook be?
#
# Two numbers describe a codebook on data:
#
# - the **quantization error**, here the mean squared pixel error of the decoded image;
# - the **perplexity**, $\exp(H)$ where $H = -\sum_k p_k \log p_k$ is the entropy of how
#   often each code is used ($p_k$ = fraction of positions with token $k$). It is $K$ when
#   every code is used equally and $1$ when only one is. The lecture writes it as
#   $2^{H}$ with $H$ in bits, the same number. Read it as "the number of codes effectively
#   in use".


# %%
def usage_perplexity(tokens, num_codes):
    """exp(entropy) of the code-usage histogram of an integer tensor of tokens."""
    p = torch.bincount(tokens.flatten(), minlength=num_codes).float() / tokens.numel()
    p = p[p > 0]  # 0 * log 0 counts as 0
    return torch.exp(-(p * p.log()).sum()).item()


print("all 8 codes equally:", usage_perplexity(torch.arange(8).repeat(10), 8))
print("one code only:      ", usage_perplexity(torch.zeros(80, dtype=torch.long), 8))
print("package's perplexity agrees:",
      math.isclose(perplexity(img_tokens, K_img).item(), usage_perplexity(img_tokens, K_img), rel_tol=1e-4))

# %% [markdown]
# Fit a k-means codebook for several $K$ on the training images and measure both numbers
# on unseen test images. These images are mostly black background, and every background
# patch gets the same token; to see how the codes are used on the shapes themselves, the
# perplexity is also computed over the *foreground* positions alone (patches with at least
# one non-black pixel).

# %%
Ks = pick(normal=[2, 4, 8, 16, 32, 64, 128, 256], quick=[2, 4, 8, 16, 32, 64])
train_vectors = patch_vectors(train_images)
# The whole test split (200 images): with only a handful of images the larger codebooks
# would look less used than they are, simply because few patches are there to use them.
sweep_images = ShapesDataset("test", image_size=image_size, num_images=1024).tensors(pick(normal=200, quick=64))
foreground = (to_features(sweep_images) > -1).any(dim=1)  # (B, H/2, W/2): not plain background
errors, perplexities, fg_perplexities, used = [], [], [], []
for k in tqdm(Ks, desc="k-means for each K"):
    cb = kmeans(train_vectors, k, iters=KMEANS.train["steps"])
    zq, tok = quantize(to_features(sweep_images), cb)
    errors.append(F.mse_loss(to_image(zq), sweep_images).item())
    perplexities.append(usage_perplexity(tok, k))
    fg_perplexities.append(usage_perplexity(tok[foreground], k))
    used.append(tok.unique().numel())

fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
axes[0].plot(Ks, errors, "o-")
axes[0].set(xlabel="codebook size K", ylabel="pixel MSE (test)", title="quantization error", ylim=(0, None))
axes[1].plot(Ks, used, "^-", label="codes used at least once")
axes[1].plot(Ks, fg_perplexities, "d-", label="perplexity, foreground only")
axes[1].plot(Ks, perplexities, "o-", label="perplexity, all positions")
axes[1].plot(Ks, Ks, "k--", lw=1, label="K")
axes[1].set(yscale="log", xlabel="codebook size K", ylabel="codes in use",
            title=f"perplexity (background = {1 - foreground.float().mean():.0%} of positions)")
axes[1].set_yticks(Ks, [str(k) for k in Ks])
axes[1].legend(fontsize=8)
for ax in axes:
    ax.set_xscale("log")
    ax.set_xticks(Ks, [str(k) for k in Ks])
    ax.minorticks_off()
plt.tight_layout()
plt.show()

# %%
share_used = [u / k for u, k in zip(used, Ks)]
fg_share = [p / k for p, k in zip(fg_perplexities, Ks)]
say(f"Measured on {len(sweep_images)} test images ({foreground.numel():,} positions): "
    f"the error falls steadily with $K$, from {errors[0]:.3f} at $K = {Ks[0]}$ to {errors[-1]:.4f} at "
    f"$K = {Ks[-1]}$. Most codes do appear somewhere in the test images (at least {min(share_used):.0%} "
    f"of them for every $K$), yet the perplexity over all positions stays far below $K$ "
    f"({perplexities[-1]:.1f} at $K = {Ks[-1]}$): the background, the share given in the title, all "
    "goes to one code, and that one code dominates the usage histogram. Perplexity counts codes by how "
    f"much they are *used*, not whether. Over the foreground alone the perplexity is far higher: "
    f"{fg_perplexities[-1]:.0f} at $K = {Ks[-1]}$, {fg_share[-1]:.0%} of $K$ (and {fg_share[0]:.0%} of "
    f"$K$ at $K = {Ks[0]}$). A bigger codebook buys detail, but each added code is used less.",
    (all(a > b for a, b in zip(errors, errors[1:])), "the error falls steadily with K"),
    (min(share_used) >= 0.5, "most codes do appear somewhere in the test images"),
    (all(p < k / 2 for p, k in zip(perplexities[2:], Ks[2:])), "the all-positions perplexity stays far below K"),
    (all(f > 2 * p for f, p in zip(fg_perplexities[3:], perplexities[3:])),
     "over the foreground alone the perplexity is far higher"),
    (fg_share[-1] < fg_share[0], "each added code is used less"))

# %% [markdown]
# Codebook usage will be a headline number when we train VQ-VAEs, and there too the
# background weighs on it.
#
# **Try it.** Move the slider: the left panel refits k-means on the 2-D points, the right one
# on image patches. Watch where new codes go and when the reconstruction starts to show
# the shapes' colours and edges. (In quick mode, or where widgets cannot render, the cell
# draws once with the default.)

# %%
slider_vectors = patch_vectors(train_images[:64])


def show_codebook_size(K=8):
    cb2d = kmeans(points, K, iters=15)
    cb_img = kmeans(slider_vectors, K, iters=10)
    zq, tok = quantize(to_features(test_images[:1]), cb_img)
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.8))
    plot_voronoi(cb2d, points, axes[0], f"2-D points, K={K}, error {quantization_error(points, cb2d):.3f}")
    axes[1].imshow(denormalize(test_images[0]).permute(1, 2, 0))
    axes[2].imshow(denormalize(to_image(zq)[0]).clamp(0, 1).permute(1, 2, 0))
    axes[1].set_title("image")
    axes[2].set_title(f"from {K} codes, perplexity {usage_perplexity(tok, K):.1f}")
    for ax in axes[1:]:
        ax.set(xticks=[], yticks=[])
    plt.show()


interactive(show_codebook_size, K=(2, 64, 1, 8))

# %% [markdown]
# ## 6. Why quantized vectors protect attention from noise
#
# The lecture's argument for codebooks in transformer models: a word token is always looked
# up as exactly the same embedding, but an image patch is not. Show the network the
# "same" picture twice and sensor noise, compression or a one-pixel shift changes every
# feature vector a little, so every attention score $q_i \cdot k_j$ changes a little.
# After snapping to the codebook, a perturbed vector that stays inside its Voronoi cell
# becomes *exactly* the same token as before, so attention sees identical input.
#
# The protection has a limit: a perturbation that crosses a cell border swaps the token for
# a different one, a large jump instead of a small drift. In the plane: a vector (white dot)
# with noise of two sizes; green copies keep the token, red ones change it.

# %%
anchor = learned_codebook[0] + torch.tensor([0.3, 0.2])
anchor_token = nearest_code(anchor[None], learned_codebook)
fig, axes = plt.subplots(1, 2, figsize=(9, 4.5))
for ax, sigma in zip(axes, [0.15, 0.8]):
    noisy = anchor + sigma * torch.randn(300, 2)
    same = nearest_code(noisy, learned_codebook) == anchor_token
    plot_voronoi(learned_codebook, points[:0], ax, f"noise std {sigma}: {same.float().mean():.0%} keep the token")
    ax.scatter(noisy[same, 0], noisy[same, 1], s=6, c="green")
    ax.scatter(noisy[~same, 0], noisy[~same, 1], s=6, c="red")
    ax.scatter(*anchor, s=60, c="white", edgecolors="k", zorder=5)
plt.show()

# %% [markdown]
# Now in a setting closer to a transformer: a sequence of $T = 64$ feature vectors in
# $D = 16$ dimensions, near (not on) the codes of a $K = 32$ codebook, as a trained
# encoder's output would be. Attention weights are
# $A = \operatorname{softmax}\!\big(Q K^\top / \sqrt{D}\big)$ with $Q = X W_Q$, $K = X W_K$.
#
# The fair question is not "how much does each kind of attention move under noise?" but
# "how far is it from the attention of the **clean, raw** vectors", the input the model
# would ideally see. Snapping itself moves every vector to its code, so the quantized
# attention starts off that ideal by a fixed amount even without any noise: the price of
# quantizing. Both curves below are measured against the same clean raw attention, on a
# log axis so that small drifts stay visible.

# %%
D_att, K_att, T = 16, 32, 64
cb_att = torch.randn(K_att, D_att)
clean = cb_att[torch.randint(0, K_att, (T,))] + 0.2 * torch.randn(T, D_att)
W_q, W_k = torch.randn(D_att, D_att) / D_att**0.5, torch.randn(D_att, D_att) / D_att**0.5


def attention_weights(x):
    """x: (..., T, D) -> (..., T, T) softmax attention weights."""
    return torch.softmax((x @ W_q) @ (x @ W_k).transpose(-1, -2) / D_att**0.5, dim=-1)


def snap(x):
    return cb_att[nearest_code(x.reshape(-1, D_att), cb_att)].reshape(x.shape)


def row_change(a, b):
    """Mean L1 distance between corresponding attention rows (each row sums to 1, so <= 2)."""
    return (a - b).abs().sum(-1).mean().item()


clean_tokens = nearest_code(clean, cb_att)
A_ideal, A_q_clean = attention_weights(clean), attention_weights(snap(clean))
snap_cost = row_change(A_q_clean, A_ideal)
sigmas = torch.logspace(-2.5, 0.3, 15)
trials = pick(normal=200, quick=40)
unchanged, rows_identical, change_raw, change_q = [], [], [], []
for s in sigmas:
    noisy = clean + s * torch.randn(trials, T, D_att)
    tok = nearest_code(noisy.reshape(-1, D_att), cb_att).reshape(trials, T)
    A_q = attention_weights(snap(noisy))
    unchanged.append((tok == clean_tokens).float().mean().item())
    rows_identical.append((A_q == A_q_clean).all(-1).float().mean().item())
    change_raw.append(row_change(attention_weights(noisy), A_ideal))
    change_q.append(row_change(A_q, A_ideal))
# Where the raw curve reaches the snapping cost: interpolate (on the log-log axes of the plot)
# between the two grid points on either side of it.
above = next((i for i, c in enumerate(change_raw) if c >= snap_cost), None)
if above is None or above == 0:
    break_even = float("nan")
else:
    x0_log, x1_log = math.log(sigmas[above - 1].item()), math.log(sigmas[above].item())
    y0_log, y1_log = math.log(change_raw[above - 1]), math.log(change_raw[above])
    break_even = math.exp(x0_log + (math.log(snap_cost) - y0_log) * (x1_log - x0_log) / (y1_log - y0_log))

fig, axes = plt.subplots(1, 2, figsize=(10.5, 3.8))
axes[0].plot(sigmas, unchanged, "o-", label="tokens unchanged")
axes[0].plot(sigmas, rows_identical, "s--", label="quantized attention rows\nbit-for-bit unchanged")
axes[0].set(xscale="log", xlabel="noise std", ylabel="fraction", ylim=(0, 1.05),
            title="tokens survive small noise")
axes[0].legend(fontsize=8, loc="lower left")
axes[1].plot(sigmas, change_raw, "o-", label="raw vectors")
axes[1].plot(sigmas, change_q, "s-", label="quantized vectors")
axes[1].axhline(snap_cost, color="tab:orange", ls=":", lw=1)
axes[1].axvline(break_even, color="grey", ls=":", lw=1)
axes[1].set(xscale="log", yscale="log", xlabel="noise std",
            ylabel="mean L1 distance of an attention row",
            title="distance from the clean raw attention")
axes[1].legend(fontsize=8)
plt.tight_layout()
plt.show()
print(f"cost of snapping (no noise at all): {snap_cost:.3f} per attention row; "
      f"the raw attention drifts that far only at noise std ~{break_even:.2f}")

# %% [markdown]
# Read the right panel from left to right. The quantized curve starts at the cost of
# snapping (dotted line) and stays flat: as long as every token survives, the quantized
# attention is **bit-for-bit** the same as without noise (left panel, dashed). The raw
# attention starts close to the ideal and drifts away steadily with the noise; on a linear
# axis its first steps would look like zero, but they are not.

# %%
first_flip = next(s.item() for s, u in zip(sigmas, unchanged) if u < 1)
before_flip = [i for i, s in enumerate(sigmas) if s < first_flip]
say(f"The two curves cross near noise std {break_even:.2f} (grey line). Tokens survive beyond "
    f"that: the first ones flip only at std {first_flip:.2f} (left panel), where "
    f"{1 - unchanged[len(before_flip)]:.1%} of them change. From there on the quantized attention moves "
    "too, in jumps: each flipped token swaps a whole row and column of scores.",
    (all(math.isclose(change_q[i], snap_cost, rel_tol=1e-5) for i in before_flip) and all(rows_identical[i] == 1 for i in before_flip),
     "as long as every token survives, the quantized attention is bit-for-bit the same (the curve stays flat)"),
    (all(a < b for a, b in zip(change_raw, change_raw[1:])), "the raw attention drifts away steadily with the noise"),
    (above is not None and 0 < above and sigmas[above - 1].item() <= break_even <= sigmas[above].item(),
     "the grey line is where the raw curve crosses the snapping cost"),
    (first_flip > break_even, "tokens start to flip only beyond the crossing"),
    (change_q[-1] > snap_cost, "beyond the first flips the quantized attention moves too"))

# %% [markdown]
# So quantizing is a trade: a fixed, known distortion in exchange for an input that does
# not change at all under small perturbations. It pays off when the perturbations are
# larger than the snapping error, and the snapping error is small when encoder outputs sit
# close to their codes. That is what the commitment loss of lecture 5 trains the encoder
# to do; it also widens the margin before a token flips.
#
# ### Back to an image's token grid
#
# The same effect on the image tokens of section 4: add pixel noise to a test image and
# quantize it again with the same 64-code codebook. Every one of its 256 patch vectors
# changes, but a token changes only where the noise pushes a patch across a cell border.
# Top row: the noisy image; bottom row: the clean image with the positions whose token
# changed marked in red.

# %%
noise_levels = [0.02, 0.1, 0.2, 0.4]
x0 = test_images[:1]
clean_grid = quantize(to_features(x0), image_codebook)[1][0]
gen = torch.Generator().manual_seed(0)


def position_kinds(x):
    """Three kinds of position, each a (B, H/2, W/2) mask: plain background, a patch of one
    colour inside a shape, and a two-tone patch (a shape's edge or a pinhole)."""
    z = to_features(x)                                                # (B, 12, H/2, W/2)
    background = ~(z > -1).any(dim=1)
    pixel_colours = z.view(z.shape[0], 3, patch * patch, *z.shape[2:])  # (B, RGB, 4 pixels, H/2, W/2)
    two_tone = (pixel_colours.amax(2) - pixel_colours.amin(2)).amax(1) > 0.1
    return {"background": background, "one-colour shape patches": ~background & ~two_tone,
            "two-tone patches": two_tone}


kind_background = position_kinds(x0)["background"][0]
fig, axes = plt.subplots(2, len(noise_levels), figsize=(2.6 * len(noise_levels), 6.0))
for col, std in enumerate(noise_levels):
    x_noisy = (x0 + std * torch.randn(x0.shape, generator=gen)).clamp(-1, 1)
    noisy_grid = quantize(to_features(x_noisy), image_codebook)[1][0]
    flipped = noisy_grid != clean_grid
    moved = (to_features(x_noisy) != to_features(x0)).any(dim=1).float().mean()
    axes[0, col].imshow(denormalize(x_noisy[0]).permute(1, 2, 0))
    axes[0, col].set_title(f"pixel noise std {std}\n{moved:.0%} of patch vectors changed", fontsize=9)
    axes[1, col].imshow(denormalize(x0[0]).permute(1, 2, 0))
    axes[1, col].imshow(np.ma.masked_where(~flipped.numpy(), flipped.numpy()), cmap="autumn",
                        extent=(-0.5, 31.5, 31.5, -0.5), interpolation="nearest", alpha=0.9)
    axes[1, col].set_title(f"{1 - flipped.float().mean():.0%} of tokens unchanged", fontsize=9)
for ax in axes.flat:
    ax.set(xticks=[], yticks=[])
plt.tight_layout(h_pad=2.0)
plt.show()

# %% [markdown]
# One image and one noise draw are an example, not a measurement. The table below repeats
# the experiment on many test images, each with its own noise, and counts the flips by
# kind of position.

# %%
flip_images = sweep_images[:pick(normal=100, quick=16)]
kinds = position_kinds(flip_images)
clean_grids = quantize(to_features(flip_images), image_codebook)[1]
gen_many = torch.Generator().manual_seed(1)
flip_rates = {name: [] for name in kinds}
for std in noise_levels:
    noisy_images = (flip_images + std * torch.randn(flip_images.shape, generator=gen_many)).clamp(-1, 1)
    flipped_many = quantize(to_features(noisy_images), image_codebook)[1] != clean_grids
    for name, where in kinds.items():
        flip_rates[name].append((int(flipped_many[where].sum()), int(where.sum())))
rate = {name: [f / n if n else 0.0 for f, n in pairs] for name, pairs in flip_rates.items()}
flips_at_smallest = sum(pairs[0][0] for pairs in flip_rates.values())
first_background_flip = next((std for std, (f, _) in zip(noise_levels, flip_rates["background"]) if f), None)
table = "\n".join(f"| {name} ({flip_rates[name][0][1]:,}) | " + " | ".join(f"{f / n:.1%}" for f, n in pairs) + " |"
                  for name, pairs in flip_rates.items())
say(f"Share of tokens changed by the noise over {len(flip_images)} test images, by kind of position "
    "(number of such positions in brackets):\n\n"
    "| position | " + " | ".join(f"std {n}" for n in noise_levels) + " |\n|---|" + "---|" * len(noise_levels)
    + "\n" + table + "\n\n"
    f"At the smallest noise every patch vector has moved, yet only {flips_at_smallest} of "
    f"{clean_grids.numel():,} tokens change ({flips_at_smallest / clean_grids.numel():.1%}), none of them "
    "background: the token grid, and therefore anything a transformer computes from it, stays almost "
    "the same. As the noise grows, the tokens of shape patches flip far more often than the background's; "
    + (f"the first background tokens flip at std {first_background_flip}." if first_background_flip
       else "no background token flips at all."),
    (flips_at_smallest / clean_grids.numel() < 0.005 and flip_rates["background"][0][0] == 0,
     "at the smallest noise only a handful of tokens change, none of them background"),
    (all(min(rate["one-colour shape patches"][i], rate["two-tone patches"][i]) > 3 * rate["background"][i]
         for i in range(1, len(noise_levels))), "shape tokens flip far more often than background ones"))

# %% [markdown]
# Why the shapes' tokens flip first: a shape's patches have similar codes nearby (variants
# of a colour, two-tone codes that differ in one pixel), so their cell borders are close.
# The clamp to the image range $[-1, 1]$ also removes the half of the noise that would push
# a black pixel below $-1$. A learned encoder followed by a codebook behaves the same way,
# with cells drawn in feature space instead of pixel space.

# %%
gaps = torch.cdist(image_codebook, image_codebook).fill_diagonal_(float("inf")).min(dim=1).values
background_code = clean_grid[kind_background][0]
shape_codes = clean_grid[~kind_background].unique()
say(f"Distance from a code to its nearest other code: {gaps[background_code]:.2f} for the background code, "
    f"{gaps[shape_codes].median():.2f} (median) for the codes of this image's shapes.",
    (gaps[background_code] > gaps[shape_codes].median(), "the shapes' codes have closer neighbours than the background's"))

# %% [markdown]
# ## Summary
#
# - A codebook is a $K \times D$ table of vectors. Replacing every channel vector of a
#   `(B, C, H, W)` feature map by its nearest code gives a quantized map of the same shape
#   and a `(B, H, W)` grid of integer tokens.
# - Nearest-neighbour quantization splits the space into Voronoi cells; k-means places the
#   codes so that the quantization error is small.
# - In code: permute to channels last before flattening, compute distances with
#   $\lVert z\rVert^2 - 2 z\cdot e + \lVert e\rVert^2$, take the **argmin**, look up,
#   permute back. Both classic bugs (no permute, argmax) run without any error message,
#   so check against a case whose answer you know.
# - A bigger codebook lowers the error; perplexity tells how many codes are really used.
# - Snapping costs a fixed distortion, and in exchange tokens do not change under
#   perturbations that stay inside a cell: attention computed from them is then exactly
#   the same. Bigger perturbations flip tokens, in jumps.
#
# ## Questions to think about
#
# 1. Section 1 showed that $\lVert z\rVert^2 - 2z\cdot e + \lVert e\rVert^2$ can come out slightly
#    negative. Can that ever make `argmin` pick a code that is not the nearest? What would
#    the two codes involved have to look like?
# 2. With a codebook of $K$ codes, how many bits does one token carry at most? How many bits
#    per token does a perplexity of 8 correspond to? For a $16 \times 16$ grid, compare
#    this with the bits in the $32 \times 32 \times 3$ image of section 4 at 8 bits per value.
# 3. The noise experiment of section 6 found a noise level below which the raw vectors stay
#    closer to the clean attention and beyond which the snapped ones do. What would move that
#    level to the left or to the right?
# 4. The foreground perplexity was much higher than the all-positions one. If you trained a
#    model to predict tokens, which of the two numbers tells you more about how hard its
#    job is, and why?
#
# **Next:** [exercise 1](../exercises/ex01_codebook.ipynb) (the codebook exercise) asks you to write the
# nearest-code lookup and the perplexity yourself. Lecture 2 turns to the probabilistic
# side: the ELBO that variational autoencoders maximise.

# %%
print(summary())
