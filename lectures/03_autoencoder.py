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
# # Lecture 3: The autoencoder
#
# Every model in this course (VAE, VQ-VAE, VQGAN) is an encoder that squeezes an image
# into a small feature map, something in the middle, and a decoder that paints the image
# back. This lecture builds and trains the plain version, with nothing in the middle, so
# that the later lectures only have to explain what they add.
#
# **What you will learn**
#
# - what a *SkipBlock* is (the lecture's residual block): written in plain PyTorch and
#   checked against the package's `SkipBlockEncoder`, and how `SkipBlockDecoder` mirrors it;
# - the shape arithmetic of the encoder and decoder for downsampling ratios 2, 4 and 8,
#   read off by running the package's `Encoder` and `Decoder` on a $64 \times 64$ image;
# - how to train the package's `Autoencoder` on the shapes dataset with the `Trainer`,
#   and how to judge it: loss curves, reconstructions of test images it never saw, and one
#   PSNR for the whole test split;
# - what the skip connections and the bottleneck do, measured with short training runs;
# - why an autoencoder is **not** a generative model: decoding a random latent gives no
#   shape, and the histogram of its latent values shows why.

# %%
# %matplotlib inline
import math

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from IPython.display import Markdown, display
from torch import nn

from dlstudio_lite import (CHECKPOINTS, Autoencoder, Decoder, Encoder, ShapesDataset, SkipBlockDecoder,
                           SkipBlockEncoder, load_or_train, pick, psnr, quick_mode, recipe,
                           reconstruction_metrics, seed_everything)
from dlstudio_lite.plot import plot_history, show_images, show_side_by_side

seed_everything(0)
print("quick mode:", quick_mode())

# %% [markdown]
# ## 1. The data
#
# The course's shapes dataset stands in for the lecture's PurdueShapes5GAN: RGB images with
# one to five coloured shapes. Pixels are scaled to $[-1, 1]$. The last 200 images are held
# out as the **test split**; nothing below ever trains on them. (Quick mode uses $32 \times 32$
# images so that the notebook runs in seconds; normal mode uses the lecture's $64 \times 64$.)

# %%
# The data of the recipe `autoencoder_shapes` (dlstudio_lite/recipes.py; quick mode: its quick variant).
train_set, test_set = recipe("autoencoder_shapes").data_config().splits()
IMAGE_SIZE, NUM_IMAGES = train_set.image_size, len(train_set) + len(test_set)   # the last 200: test
print(f"{len(train_set)} training and {len(test_set)} test images of {IMAGE_SIZE}x{IMAGE_SIZE}")
show_images(train_set.tensors(16), nrow=8, title="training images")
plt.show()

# %% [markdown]
# ## 2. SkipBlocks
#
# A plain stack of convolutions gets harder to train the deeper it is: the gradient reaching
# the first layers has gone through every layer on the way. A *residual* or *skip* block
# computes a correction $f(x)$ and adds it to its input:
#
# $$ y = x + f(x). $$
#
# The gradient then has a direct route, $\partial y / \partial x = I + \partial f / \partial x$,
# and a block whose $f$ is still near zero does no harm. Section 5 measures what this buys.
#
# That textbook form needs $x$ and $f(x)$ to have the same shape. The lecture's blocks also
# change the resolution or the width, and then the skip path cannot be the identity. In
# general they compute
#
# $$ y = s(x) + f(x), $$
#
# where the skip path $s$ is the cheapest map that gives $x$ the output's shape:
#
# | block | skip path $s(x)$ | learned? |
# | --- | --- | --- |
# | encoder, same size and width | $x$ (the identity) | no |
# | encoder, doubles the width | `torch.cat([x, x], dim=1)` | no |
# | encoder, halves the resolution | $D(x)$, a strided 1x1 convolution | **yes** |
# | decoder, halves the width | the first half of the channels of $x$ | no |
# | decoder, doubles the resolution | nearest-neighbour upsampling of $x$ | no |
#
# The downsampling block is the one to look at closely, and it is the one written out
# below. With $f$ = two rounds of (3x3 conv, GroupNorm, ReLU) it computes
# $y = D(x) + D(f(x))$: the *same* strided 1x1 convolution $D(u) = Wu + b$ is applied to
# both paths so that they line up pixel for pixel. Since $D$ is linear up to its bias,
# $y = W\,(x + f(x)) + 2b$ (taken at every second pixel): a textbook residual block at full
# resolution, followed by a learned strided 1x1 convolution. The gradient's short route to
# $x$ therefore passes through one linear layer, $W$, rather than the identity: still
# short, but not free. (In the decoder every block also ends with a 3x3 conv + GroupNorm +
# ReLU *after* the addition, so there too the skip path is not the whole story.)
#
# Here is that downsampling block in plain PyTorch. The attribute names copy the package's,
# so the package block's weights can be loaded into it and the outputs compared.


# %%
class PlainSkipDown(nn.Module):
    """Downsampling SkipBlock: (B, C, H, W) -> (B, C, H/2, W/2)."""

    def __init__(self, ch):
        super().__init__()
        self.conv1 = nn.Conv2d(ch, ch, 3, padding=1)
        self.norm1 = nn.GroupNorm(math.gcd(32, ch), ch)
        self.conv2 = nn.Conv2d(ch, ch, 3, padding=1)
        self.norm2 = nn.GroupNorm(math.gcd(32, ch), ch)
        self.downsampler = nn.Conv2d(ch, ch, 1, stride=2)  # shared by both paths

    def forward(self, x):
        f = F.relu(self.norm1(self.conv1(x)))
        f = F.relu(self.norm2(self.conv2(f)))
        return self.downsampler(f) + self.downsampler(x)  # skip path D(x), not x itself


package_block = SkipBlockEncoder(32, 32, downsample=True)
plain_block = PlainSkipDown(32)
plain_block.load_state_dict(package_block.state_dict())  # same names, same shapes
x = torch.randn(2, 32, 16, 16)
print("input", tuple(x.shape), "-> output", tuple(plain_block(x).shape))
print("plain block == SkipBlockEncoder:", torch.allclose(plain_block(x), package_block(x), atol=1e-6))

# The rewrite above: D(x) + D(f(x)) = W (x + f(x)) + 2b, a residual block followed by D.
D = plain_block.downsampler
with torch.no_grad():
    f_x = F.relu(plain_block.norm2(plain_block.conv2(F.relu(plain_block.norm1(plain_block.conv1(x))))))
    rewritten = F.conv2d(x + f_x, D.weight, 2 * D.bias, stride=2)
    print("             == W (x + f(x)) + 2b:", torch.allclose(plain_block(x), rewritten, atol=1e-5))

# %% [markdown]
# The encoder has a second kind of block that keeps the resolution and **doubles** the
# channels. There the identity $x$ has half as many channels as $f(x)$; the lecture's trick is
# to stack $x$ on top of itself, `torch.cat([x, x], dim=1)`, instead of learning a projection.
#
# The decoder's `SkipBlockDecoder` mirrors both: one kind **halves** the channels (the identity
# is cut to its first half), the other **doubles** the resolution with nearest-neighbour
# upsampling of both paths. Each decoder block ends with one more 3x3 conv + GroupNorm + ReLU.

# %%
blocks = {
    "SkipBlockEncoder(32, 64)": (SkipBlockEncoder(32, 64), torch.randn(2, 32, 16, 16)),
    "SkipBlockDecoder(64, 32)": (SkipBlockDecoder(64, 32), torch.randn(2, 64, 8, 8)),
    "SkipBlockDecoder(32, 32, upsample=True)": (SkipBlockDecoder(32, 32, upsample=True),
                                                torch.randn(2, 32, 8, 8)),
}
for name, (block, inp) in blocks.items():
    print(f"{name:>40}: {tuple(inp.shape)} -> {tuple(block(inp).shape)}")

# %% [markdown]
# Asking a block for something it cannot do (tripling the channels, say) raises a
# `ValueError` that says what was expected. The lecture's code stops the whole Python
# process with `sys.exit` instead, which in a notebook kills the kernel
# ([errata B7](../docs/ERRATA.md#b7)).

# %%
try:
    SkipBlockEncoder(32, 96)
except ValueError as err:
    print("ValueError:", err)

# %% [markdown]
# ## 3. Shape arithmetic of the encoder and decoder
#
# The `Encoder` starts with a 3x3 conv from 3 to `base` channels, then repeats one *stage*
# per halving of the resolution: a downsampling SkipBlock followed by a channel-doubling one.
# A downsampling **ratio** $r = H / h \in \{2, 4, 8\}$ therefore means $\log_2 r$ stages, and
#
# $$ (3, H, W) \;\longrightarrow\; \left(\text{base} \cdot r,\; \tfrac{H}{r},\; \tfrac{W}{r}\right). $$
#
# With the lecture's `base = 64` a $64 \times 64$ image becomes $128 \times 32 \times 32$,
# $256 \times 16 \times 16$ or $512 \times 8 \times 8$. The `Decoder` undoes every stage:
# halve the channels, then double the resolution, and a final 3x3 conv back to 3 channels.
# Rather than trusting the formula, run the package's modules and record the shape after
# every stage with forward hooks. The lecture-size models are built on PyTorch's `meta`
# device: tensors there carry a shape but no data, so every layer reports its output shape
# without allocating weights or doing any arithmetic.


# %%
def stage_shapes(module, x):
    """Run `module` on x; return ([(layer name, output shape (C, H, W))], output)."""
    shapes, hooks = [], []
    layers = [("conv_in", module.conv_in)] if hasattr(module, "conv_in") else []
    for b in module.blocks:
        kind = "(down)" if getattr(b, "downsample", False) else ""
        kind += "(up)" if getattr(b, "upsample", False) else ""
        layers.append((f"{type(b).__name__}({b.in_ch}, {b.out_ch}){kind}", b))
    layers += [("conv_out", module.conv_out)] if hasattr(module, "conv_out") else []
    for name, layer in layers:
        hooks.append(layer.register_forward_hook(
            lambda m, i, out, name=name: shapes.append((name, tuple(out.shape[1:])))))
    y = module(x)
    for h in hooks:
        h.remove()
    return shapes, y


BASE = 64  # the lecture's width
rows = ["| ratio | encoder: output shape (C, H, W) after each layer | latent numbers | decoder output |",
        "| --- | --- | --- | --- |"]
with torch.device("meta"):
    image = torch.empty(1, 3, 64, 64)
    for ratio in (2, 4, 8):
        enc = Encoder(image_size=64, latent_size=64 // ratio, base_channels=BASE)
        dec = Decoder(image_size=64, latent_size=64 // ratio, base_channels=BASE)
        enc_shapes, z = stage_shapes(enc, image)
        dec_shapes, out = stage_shapes(dec, z)
        path = " → ".join(str(s) for _, s in enc_shapes)
        rows.append(f"| {ratio} | (3, 64, 64) → {path} | {z[0].numel():,} | {tuple(out.shape[1:])} |")
display(Markdown("\n".join(rows)))

# %% [markdown]
# The full, layer-by-layer list for ratio 4 (the lecture's main setting, and the one the
# VQ-VAE of lecture 5 uses):

# %%
with torch.device("meta"):
    enc = Encoder(image_size=64, latent_size=16, base_channels=BASE)
    dec = Decoder(image_size=64, latent_size=16, base_channels=BASE)
    enc_shapes, z = stage_shapes(enc, torch.empty(1, 3, 64, 64))
    dec_shapes, out = stage_shapes(dec, z)
for part, shapes in (("encoder", enc_shapes), ("decoder", dec_shapes)):
    for name, shape in shapes:
        print(f"{part:>8} {name:<34} {shape}")

# %% [markdown]
# Look at the "latent numbers" column: a $64 \times 64 \times 3$ image holds 12,288 numbers,
# yet the ratio-2 and ratio-4 latents hold **more** than that (131,072 and 65,536). Only the
# ratio-8 latent (32,768 numbers) gets closer, and it is still larger. The lecture's
# encoder makes the grid *coarser*, not the description *smaller*; an autoencoder this
# wide could in principle learn something close to the identity. What makes the latent
# interesting in the later lectures is what sits in the middle: noise and a prior (VAE) or
# a codebook (VQ-VAE), which limit how much information each latent position can carry.
#
# ## 4. Training the package's `Autoencoder`
#
# The `Autoencoder` is just `decode(encode(x))`, trained to minimise the mean squared error
# per pixel,
#
# $$ \mathcal{L}(x) = \frac{1}{CHW} \sum_{c,i,j} \big(x_{cij} - \hat x_{cij}\big)^2 , \qquad \hat x = \mathrm{dec}(\mathrm{enc}(x)). $$
#
# The model here is narrower than the lecture's (`base_channels=16` instead of 64) so that it
# trains on a laptop CPU; the shapes are the same as in the table with every channel count
# divided by 4. In normal mode the notebook loads the checkpoint shipped in
# `data/checkpoints/autoencoder_shapes/` (made by one `dlstudio-lite train autoencoder ...`
# command, see `data/checkpoints/README.md`); if it is missing or damaged, or in quick mode,
# it trains a model here with the `Trainer`.

# %%
seed_everything(0)
autoencoder, history = load_or_train("autoencoder_shapes", train_set, test_set)
device = next(autoencoder.parameters()).device
print(f"trained for {history['train/loss'][-1][0]} steps;", autoencoder.hparams)
print(f"{sum(p.numel() for p in autoencoder.parameters()):,} parameters")

# %% [markdown]
# ### Loss curves
#
# `train/recon` is the running mean of the training loss between log points; `test/recon`
# is the same loss on the 200 held-out images. The shipped run measured it every 250 steps,
# so in normal mode it is a full curve; a model trained here in quick mode is tested only
# once, at the end, and shows a single dot. The test curve stays close to the training curve
# all the way: the model does not just memorise its training images. The log scale shows
# that both keep falling long after the first, steep drop.

# %%
ax = plot_history(history, keys=[k for k in ("train/recon", "test/recon") if k in history],
                  logy=True, title="autoencoder: MSE per pixel")
for line in ax.get_lines():
    if len(line.get_xdata()) == 1:
        line.set(marker="o", linestyle="none")  # a single test point
plt.show()

# %% [markdown]
# ### Reconstructions of unseen images
#
# The lecture shows each test image and its reconstruction *in one box*: input on the left,
# decoder output on the right. That layout is one `torch.cat` along the width axis.
#
# One number should describe the model, so PSNR (peak signal-to-noise ratio,
# $10 \log_{10}(2^2 / \text{MSE})$ for pixels in $[-1, 1]$; higher is better) is computed once, over
# the whole test split, with the package's `reconstruction_metrics`. The figure shows the
# first 16 test images and gives their own PSNR too: it differs from the split's, because
# the PSNR of single images varies a lot (see the histogram below).


# %%
def input_output_pairs(x, x_hat):
    """(B, C, H, W) twice -> (B, C, H, 2W): each input with its output on its right.
    (Later lectures import the same helper from `dlstudio_lite.plot`.)"""
    return torch.cat([x, x_hat.clamp(-1, 1)], dim=3)


test_metrics = reconstruction_metrics(autoencoder, test_set, device)
x_test = test_set.tensors(16).to(device)
with torch.no_grad():
    x_rec = autoencoder.reconstruct(x_test)
show_images(input_output_pairs(x_test, x_rec), nrow=4,
            title=f"test images: input | output   (these 16: PSNR {psnr(x_rec, x_test):.1f} dB; "
                  f"all {test_metrics['num_images']}: {test_metrics['psnr']:.1f} dB)", scale=1.5)
plt.show()

# %%
x_all = test_set.tensors(len(test_set)).to(device)
with torch.no_grad():
    per_image_psnr = torch.stack([psnr(autoencoder.reconstruct(x[None]), x[None]) for x in x_all]).cpu()
shape_area = (x_all > -1).any(dim=1).float().mean(dim=(1, 2)).cpu()   # fraction of non-black pixels
fig, axes = plt.subplots(1, 2, figsize=(10, 3.3))
axes[0].hist(per_image_psnr.numpy(), bins=25)
axes[0].axvline(test_metrics["psnr"], color="k", ls="--", label=f"mean {test_metrics['psnr']:.1f} dB")
axes[0].set(xlabel="PSNR of one test image (dB)", ylabel="images", title="PSNR varies from image to image")
axes[0].legend()
axes[1].scatter(100 * shape_area, per_image_psnr, s=8)
axes[1].set(xlabel="% of the image covered by shapes", ylabel="PSNR (dB)", title="more shape, lower PSNR")
plt.tight_layout()
plt.show()

# %% [markdown]
# A mostly black image is easy: the background costs almost nothing, so its PSNR is high.
# The more of an image the shapes cover, the more edges and colours there are to get wrong.
# A sample of 16 or 32 images can therefore land a dB or more away from the split's mean,
# depending on which images it happens to contain; quote the whole split.
#
# ### Look closer: the pinholes
#
# The shapes are rotated without interpolation, which leaves isolated pixels of background
# inside them: *pinholes* (`ShapesDataset(..., return_holes=True)` returns where they are).
# They are easy to miss at this size, but lecture 5 depends on them: the lecture's claim is
# that a VQ-VAE redraws them and a VAE smooths them away, and lecture 5 measures exactly
# that. Here, zoomed in on the test images with the most holes, is what the plain
# autoencoder does with them.

# %%
holes_set = ShapesDataset("test", image_size=IMAGE_SIZE, num_images=NUM_IMAGES, return_holes=True)
x_h, holes = map(torch.stack, zip(*[holes_set[i] for i in range(pick(normal=64, quick=32))]))
with torch.no_grad():
    x_h_rec = autoencoder.reconstruct(x_h.to(device)).clamp(-1, 1).cpu()
crop = pick(normal=20, quick=12)
chosen = holes.flatten(1).sum(1).argsort(descending=True)[:3]
fig, axes = plt.subplots(len(chosen), 3, figsize=(6.5, 2.3 * len(chosen)))
for row, j in enumerate(chosen.tolist()):
    window = F.avg_pool2d(holes[j][None, None].float(), crop, stride=1)[0, 0]
    r, c = divmod(int(window.flatten().argmax()), window.shape[1])    # densest crop of holes
    for col, (label, img) in enumerate({"input": x_h[j], "autoencoder": x_h_rec[j]}.items()):
        axes[row, col].imshow(((img[:, r:r + crop, c:c + crop] + 1) / 2).permute(1, 2, 0),
                              interpolation="nearest")
        axes[row, col].set_title(label if row == 0 else "")
    axes[row, 2].imshow(holes[j, r:r + crop, c:c + crop], cmap="gray", interpolation="nearest")
    axes[row, 2].set_title("hole mask" if row == 0 else "")
    for ax in axes[row]:
        ax.set_axis_off()
plt.tight_layout()
plt.show()
print(f"{int(holes.sum())} hole pixels in {len(x_h)} test images "
      f"({holes.float().mean():.2%} of all pixels)")

# %% [markdown]
# The shipped autoencoder does not ignore the holes, but it does not draw them either:
# where the input has crisp black pixels, the output has a blurred, speckled texture with
# darker spots in roughly the right places. The holes are about one pixel in a hundred, so
# they hardly move the MSE, and they are among the last things a model learns. Whether a
# model keeps them is a question about what its latent can carry and how it is trained;
# this autoencoder, with no limit on its latent except the grid's coarseness, is the
# reference point for lectures 4 and 5.
#
# ## 5. Do the skips matter? Depth and bottleneck, measured
#
# Two claims from above deserve a test: that skip connections make a network easier to
# train, and that the latent's size limits what the decoder can reproduce. The package's
# `Autoencoder` takes `skip_connections=False` (every block without its skip path: a plain
# stack of convolutions) and `num_repeats` (extra same-width blocks per encoder stage, as in
# the lecture's code). Short runs on $32 \times 32$ images with a narrow model
# (`base_channels=8`, identical seeds and settings) are enough to see both effects; each
# run takes a few seconds. (Quick mode cuts the runs to 20 steps, and then the curves
# below mean nothing.)

# %%
SMALL = 32
# The recipe autoencoder_depth_demo (dlstudio_lite/recipes.py): its data, model and training.
small_train, small_test = recipe("autoencoder_depth_demo").data_config().splits()


def short_run(**hparams):
    """Train a small autoencoder briefly; returns (model, history)."""
    seed_everything(0)
    return load_or_train("autoencoder_depth_demo", small_train, small_test, model_kwargs=hparams)


depth_runs = {}
for repeats in (0, 4):
    for skips in (True, False):
        model, hist = short_run(num_repeats=repeats, skip_connections=skips)
        blocks = len(model.encoder.blocks) + len(model.decoder.blocks)
        depth_runs[(repeats, skips)] = (blocks, hist)
        if repeats == 0 and skips:
            baseline_model = model      # reused in the bottleneck comparison below

fig, ax = plt.subplots(figsize=(7, 3.8))
for (repeats, skips), (blocks, hist) in depth_runs.items():
    steps_logged, values = zip(*hist["train/recon"])
    ax.plot(steps_logged, values, ls="-" if skips else "--", color="tab:blue" if repeats == 0 else "tab:red",
            label=f"{blocks} blocks, {'with' if skips else 'without'} skips: "
                  f"test MSE {hist['test/recon'][-1][1]:.3f}")
ax.set(yscale="log", xlabel="step", ylabel="training MSE per pixel",
       title="same model, with and without skip paths")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# At both depths the run without skip paths (dashed) trains more slowly than the same
# network with them (solid), and the gap is much wider for the deep network (red): the
# deeper the plain stack, the worse it does in the same number of steps, which is the
# lecture's reason for using SkipBlocks. Note also that depth itself buys nothing in so
# short a run: the deep network with skips is not better than the shallow one. Depth pays
# off with longer training and harder data; skips are what make it affordable.
#
# Now the bottleneck. Ratios 2, 4 and 8 give latents of $16 \times 16$, $8 \times 8$ and
# $4 \times 4$ positions (16, 32 and 64 channels with this narrow model). The $32 \times 32 \times 3$
# image holds 3,072 numbers; the three latents hold 4,096, 2,048 and 1,024.

# %%
bottleneck_runs = {}
for latent in (16, 8, 4):
    if latent == SMALL // 4:        # the shallow run with skips above has exactly these settings
        bottleneck_runs[latent] = (baseline_model, depth_runs[(0, True)][1]["test/recon"][-1][1])
        continue
    model, hist = short_run(latent_size=latent)
    bottleneck_runs[latent] = (model, hist["test/recon"][-1][1])

x_small = small_test.tensors(6).to(device)
with torch.no_grad():
    sizes = [model.encode(x_small[:1]).numel() for model, _ in bottleneck_runs.values()]
    pairs = [x_small] + [model.reconstruct(x_small).clamp(-1, 1) for model, _ in bottleneck_runs.values()]
fig = plt.figure(figsize=(11, 3.6))
ax = fig.add_subplot(1, 3, 1)
ax.plot(sizes, [m for _, m in bottleneck_runs.values()], "o-")
for size, (latent, (_, m)) in zip(sizes, bottleneck_runs.items()):
    ax.annotate(f"{latent}x{latent}", (size, m), textcoords="offset points", xytext=(5, 5))
ax.set(xscale="log", xlabel="numbers in the latent", ylabel="test MSE per pixel",
       title="smaller latent, worse reconstruction")
sub = fig.add_subplot(1, 3, (2, 3))
show_images(torch.cat(pairs).cpu(), nrow=len(x_small), ax=sub,
            title="rows: input, then latents 16x16, 8x8, 4x4 (same short training)")
plt.tight_layout()
plt.show()

# %% [markdown]
# After so short a training every reconstruction is still blurry and pale; the pictures
# show where each model stands, not what it could reach. The numbers separate the
# latents: the $4 \times 4$ latent, a third of the image's size, is clearly worse, while
# $16 \times 16$ and $8 \times 8$ are nearly tied. At this stage the training, not the latent,
# limits the larger two. A bottleneck that forces the model to choose what to keep is
# what the later lectures add on purpose: noise (VAE) or a codebook (VQ-VAE).

# %% [markdown]
# ## 6. Why an autoencoder is not a generative model
#
# A *generative* model lets you draw new images: pick a random latent, decode it. An
# autoencoder's decoder has only ever seen latents produced by its encoder, and nothing in the
# training loss says what those latents look like as a set. So what happens if we decode
# a random one?
#
# To give the decoder a fair chance, draw Gaussian noise with the **same mean and standard
# deviation per channel** as the encoder's real latents, so each latent value sits in the
# right range.

# %%
with torch.no_grad():
    z_real = autoencoder.encode(x_test)                        # (B, C, h, w)
    mean = z_real.mean(dim=(0, 2, 3), keepdim=True)            # per channel
    std = z_real.std(dim=(0, 2, 3), keepdim=True)
    gen = torch.Generator().manual_seed(0)
    z_noise = mean + std * torch.randn(z_real.shape, generator=gen).to(device)
    decoded_noise = autoencoder.decode(z_noise)
show_side_by_side({"decoded latents of test images": x_rec, "decoded Gaussian latents": decoded_noise},
                  n=8)
plt.show()

# %% [markdown]
# The noise decodes to coloured texture, not to shapes. Matching each value's range is not
# enough: a shape is a *pattern* across many latent positions and channels (edges that line
# up, a region of one colour), and independent noise has none of it. The histogram makes the
# mismatch visible even one value at a time.

# %%
values = z_real.flatten().cpu()
fig, ax = plt.subplots(figsize=(6.5, 3.5))
ax.hist(values.numpy(), bins=120, density=True, alpha=0.7, label="encoder latents (test images)")
grid = torch.linspace(values.min().item(), values.max().item(), 400)
m, s = values.mean().item(), values.std().item()
ax.plot(grid, torch.exp(-0.5 * ((grid - m) / s) ** 2) / (s * math.sqrt(2 * math.pi)),
        "r", label=f"Gaussian, same mean/std ({m:.2f}, {s:.2f})")
ax.set(xlabel="latent value", ylabel="density (log scale)", yscale="log", ylim=(1e-5, None),
       title="latent values are not Gaussian")
ax.legend()
plt.show()
far = ((values - m).abs() > 4 * s).float().mean().item()
print(f"values more than 4 std from the mean: {far:.2%} (a Gaussian: {math.erfc(4 / math.sqrt(2)):.4%})")

# %% [markdown]
# The real latents form a sharper peak than the Gaussian, with much longer tails (the log
# scale shows both): most latent positions see plain background and give nearly the same
# values, while the few positions on a shape's edge give extreme ones, far more often than
# a Gaussian would. A Gaussian with the same mean and variance therefore spreads its draws
# where the real latents rarely are. Worse, the set of real latents is a thin,
# structured subset of a 16,384-dimensional space (for this model; 65,536 for the lecture's):
# almost every random point lies far from it, where the decoder was never trained.
#
# The VAE of the next lecture fixes exactly this: it trains the encoder so that its latents
# *do* look like draws from a known distribution, $\mathcal N(0, I)$, so that sampling from
# that distribution and decoding gives images.

# %% [markdown]
# ## Summary
#
# - A SkipBlock adds a learned correction to its input; downsampling applies one strided
#   1x1 conv to both paths, widening stacks the identity on itself, and the decoder's blocks
#   mirror this with nearest-neighbour upsampling and a sliced identity.
# - An encoder with ratio $r$ maps $(3, H, W)$ to $(\text{base}\cdot r, H/r, W/r)$; with the
#   lecture's widths the latent holds *more* numbers than the image, so the bottleneck is
#   in resolution, not in size.
# - A skip path $s(x)$ is the identity only when the block keeps the shape; the
#   downsampling block's is a learned strided 1x1 conv. Without skip paths the same network
#   trained more slowly, and the deeper it was, the more so.
# - Trained with per-pixel MSE, the autoencoder reconstructs unseen shapes well. Quote one
#   PSNR over the whole test split; single images vary by several dB.
# - A latent much smaller than the image reconstructs worse after the same training; the
#   pinholes are the fine detail that lectures 4 and 5 will compare.
# - It is not generative: its latents form an irregular set that random (even
#   range-matched) noise misses, so decoded noise is texture, not shapes.
#
# ## Questions to think about
#
# 1. The downsampling SkipBlock computes $W(x + f(x)) + 2b$. If $W$ happened to be
#    badly conditioned (some directions almost zeroed), what would that do to the "direct
#    route" of the gradient? Would an identity skip at half resolution (say, average
#    pooling) avoid the problem?
# 2. In section 5 the $16 \times 16$ and $8 \times 8$ latents ended almost tied after a short
#    run, the $4 \times 4$ one clearly behind. What would you expect after much longer
#    training, and why could the $4 \times 4$ latent never catch up?
# 3. The PSNR histogram showed that images with more shape score lower. If you compared two
#    models on two *different* random samples of 16 test images, how could that mislead you?
# 4. Why does a plain autoencoder have no reason to keep the pinholes, and no reason to
#    drop them either?
#
# **Next:** [exercise 3](../exercises/ex03_autoencoder.ipynb) (the autoencoder exercise). Lecture 4 turns the
# autoencoder into a VAE, whose latents can be sampled.
