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
from tqdm.auto import tqdm

from dlstudio_lite import (CHECKPOINTS, Autoencoder, Decoder, Encoder, ShapesDataset, SkipBlockDecoder,
                           SkipBlockEncoder, load_or_train, pick, psnr, quick_mode, recipe,
                           reconstruction_metrics, seed_everything)
from dlstudio_lite.claims import claim, say, summary
from dlstudio_lite.plot import plot_history, show_images, show_side_by_side

seed_everything(0)
print("quick mode:", quick_mode())

# %% [markdown]
# ## 1. The data
#
# The course's shapes dataset stands in for the lecture's PurdueShapes5GAN: RGB images with
# one to five coloured shapes. Pixels are scaled to $[-1, 1]$. The last 200 images are held
# out as the **test split**; nothing below ever trains on them. (Quick mode uses $32 \times 32$
# images so that the notebook runs quickly; normal mode uses the lecture's $64 \times 64$.)

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
claim(torch.allclose(plain_block(x), package_block(x), atol=1e-6) and
      torch.allclose(plain_block(x), rewritten, atol=1e-5),
      "the plain block equals SkipBlockEncoder, and D(x) + D(f(x)) = W (x + f(x)) + 2b", quick=True)

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
latent_numbers = {}
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
        latent_numbers[ratio] = z[0].numel()
display(Markdown("\n".join(rows)))
claim(all(n > 3 * 64 * 64 for n in latent_numbers.values()),
      "every latent of the lecture's widths holds more numbers than the 12,288 of the image", quick=True)

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
# once, at the end, and shows a single dot.

# %%
ax = plot_history(history, keys=[k for k in ("train/recon", "test/recon") if k in history],
                  logy=True, title="autoencoder: MSE per pixel")
for line in ax.get_lines():
    if len(line.get_xdata()) == 1:
        line.set(marker="o", linestyle="none")  # a single test point
plt.show()


def train_value_at(step):
    """The running training loss logged closest to `step`."""
    return min(history["train/recon"], key=lambda point: abs(point[0] - step))[1]


test_curve = history["test/recon"]
test_over_train = max(value / train_value_at(step) for step, value in test_curve)
middle = min(test_curve, key=lambda point: abs(point[0] - test_curve[-1][0] // 4))
say(f"The test curve stays close to the training curve all the way (at most {test_over_train - 1:.0%} "
    "above it): the model does not just memorise its training images. The log scale shows that both "
    f"keep falling long after the first, steep drop: the test loss still falls from {middle[1]:.4f} at "
    f"step {middle[0]} to {test_curve[-1][1]:.4f} at step {test_curve[-1][0]}.",
    (test_over_train < 1.25, "the test curve stays close to the training curve"),
    (test_curve[-1][1] < 0.8 * middle[1], "both curves keep falling long after the first drop"))

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
claim(test_metrics["psnr"] > 22, "the autoencoder reconstructs unseen shapes well (PSNR above 22 dB "
      "on the whole test split)", detail=f"{test_metrics['psnr']:.1f} dB")

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

# %%
gen = torch.Generator().manual_seed(0)
subset_means = torch.stack([per_image_psnr[torch.randperm(len(per_image_psnr), generator=gen)[:16]].mean()
                            for _ in range(1000)])
off_by = (subset_means - per_image_psnr.mean()).abs()
correlation = torch.corrcoef(torch.stack([shape_area, per_image_psnr]))[0, 1].item()
say("A mostly black image is easy: the background costs almost nothing, so its PSNR is high. The more "
    "of an image the shapes cover, the more edges and colours there are to get wrong (correlation "
    f"between covered area and PSNR: {correlation:.2f}); single images range from "
    f"{per_image_psnr.min():.1f} to {per_image_psnr.max():.1f} dB. A sample of 16 images therefore "
    f"lands {off_by.mean():.1f} dB away from the split's mean on average, and {(off_by >= 1).float().mean():.0%} "
    "of random samples of 16 land a dB or more away, depending on which images they happen to contain; "
    "quote the whole split.",
    (correlation < -0.5, "the more of an image the shapes cover, the lower its PSNR"),
    (per_image_psnr.std() > 2, "single images vary by several dB"))

# %% [markdown]
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

# %%
brightness = ((x_h_rec + 1) / 2).mean(dim=1)                        # (B, H, W), 0 = black
shape_pixels = (x_h > -1).any(dim=1) & ~holes                       # lit pixels of the shapes
at_holes, on_shapes = brightness[holes].mean().item(), brightness[shape_pixels].mean().item()
say(f"The shipped autoencoder does not ignore the holes, but it does not draw them either: at the hole "
    f"pixels its output has a mean brightness of {at_holes:.2f} (black is 0), against {on_shapes:.2f} on the "
    "rest of the shapes: darker spots in roughly the right places, in a blurred, speckled texture, where "
    f"the input has mostly black pixels. The holes are {holes.float().mean():.1%} of the pixels, so they hardly "
    "move the MSE.",
    (at_holes < 0.9 * on_shapes, "the output is darker at the holes than on the rest of the shapes"),
    (at_holes > 0.5 * on_shapes, "but the autoencoder does not draw the holes black"))

# %% [markdown]
# Whether a model keeps them is a question about what its latent can carry and how it is
# trained; this autoencoder, with no limit on its latent except the grid's coarseness, is
# the reference point for lectures 4 and 5.
#
# ## 5. Do the skips matter? Depth and bottleneck, measured
#
# Two claims from above deserve a test: that skip connections make a network easier to
# train, and that the latent's size limits what the decoder can reproduce. The package's
# `Autoencoder` takes `skip_connections=False` (every block without its skip path: a plain
# stack of convolutions) and `num_repeats` (extra same-width blocks per encoder stage, as in
# the lecture's code). Short runs on $32 \times 32$ images with a narrow model
# (`base_channels=8`, identical settings) are enough to see both effects. A difference
# between two single runs can be an accident of the random start, so every setting is
# trained from three seeds, 100 steps each (the recipe `autoencoder_depth_demo`). (Quick mode
# cuts the runs to a few steps and one seed, and then the curves below mean nothing.)

# %%
SMALL = 32
# The recipe autoencoder_depth_demo (dlstudio_lite/recipes.py): its data, model and training.
small_train, small_test = recipe("autoencoder_depth_demo").data_config().splits()


SEEDS = recipe("autoencoder_depth_demo").seeds    # quick mode: the first alone


def short_run(seed=0, **hparams):
    """Train a small autoencoder briefly (the recipe, with ``hparams`` changed); returns (model, history)."""
    seed_everything(seed)
    return load_or_train("autoencoder_depth_demo", small_train, small_test, model_kwargs=hparams)


depth_runs = {}      # (repeats, skips) -> (blocks, [history of each seed])
settings = [(repeats, skips, seed) for repeats in (0, 4) for skips in (True, False) for seed in SEEDS]
for repeats, skips, seed in tqdm(settings, desc="short training runs"):
    model, hist = short_run(num_repeats=repeats, skip_connections=skips, seed=seed)
    blocks = len(model.encoder.blocks) + len(model.decoder.blocks)
    depth_runs.setdefault((repeats, skips), (blocks, []))[1].append(hist)
    if repeats == 0 and skips and seed == SEEDS[0]:
        baseline_model = model      # reused in the bottleneck comparison below


def final_test_mse(histories):
    """The last test MSE of each run: a tensor with one value per seed."""
    return torch.tensor([hist["test/recon"][-1][1] for hist in histories])


fig, ax = plt.subplots(figsize=(7, 3.8))
for (repeats, skips), (blocks, histories) in depth_runs.items():
    finals = final_test_mse(histories)
    for i, hist in enumerate(histories):
        steps_logged, values = zip(*hist["train/recon"])
        ax.plot(steps_logged, values, ls="-" if skips else "--", lw=1,
                color="tab:blue" if repeats == 0 else "tab:red",
                label=f"{blocks} blocks, {'with' if skips else 'without'} skips: test MSE "
                      f"{finals.min():.3f} to {finals.max():.3f}" if i == 0 else None)
ax.set(yscale="log", xlabel="step", ylabel="training MSE per pixel",
       title=f"same model, with and without skip paths ({len(SEEDS)} seeds each)")
ax.legend(fontsize=8)
plt.show()

# %%
shallow_with, shallow_without = final_test_mse(depth_runs[(0, True)][1]), final_test_mse(depth_runs[(0, False)][1])
deep_with, deep_without = final_test_mse(depth_runs[(4, True)][1]), final_test_mse(depth_runs[(4, False)][1])
n_seeds = len(SEEDS)
shallow_wins = int((shallow_without > shallow_with).sum())
say(f"Final test MSE over {n_seeds} seeds (mean): shallow network {shallow_with.mean():.3f} with skips, "
    f"{shallow_without.mean():.3f} without; deep network {deep_with.mean():.3f} with, "
    f"{deep_without.mean():.3f} without. In the deep network every run without skip paths (dashed) ends "
    f"above every run with them (worst with skips: {deep_with.max():.3f}, best without: {deep_without.min():.3f}). "
    f"In the shallow one the plain stack is behind in {shallow_wins} of the {n_seeds} seed pairs, by "
    f"{(shallow_without - shallow_with).mean():.3f} on average, a much smaller gap than the deep network's "
    f"{(deep_without - deep_with).mean():.3f}. The deeper the plain stack, the worse it does in the same "
    "number of steps, which is the lecture's reason for using SkipBlocks. Depth itself buys nothing in so "
    f"short a run: the deep network with skips ends at {deep_with.mean():.3f}, the shallow one at "
    f"{shallow_with.mean():.3f}. Depth pays off with longer training and harder data; skips are what make "
    "it affordable.",
    (deep_without.min() > deep_with.max(), "in the deep network every run without skips ends above every run with them"),
    ((deep_without - deep_with).mean() > 2 * (shallow_without - shallow_with).mean(),
     "the gap is much wider for the deep network"),
    (shallow_without.mean() > shallow_with.mean(), "the shallow plain stack is behind on average"),
    (deep_with.mean() > 0.95 * shallow_with.mean(), "the deep network with skips is not better than the shallow one"))

# %% [markdown]
# Now the bottleneck. Ratios 2, 4 and 8 give latents of $16 \times 16$, $8 \times 8$ and
# $4 \times 4$ positions (16, 32 and 64 channels with this narrow model). The $32 \times 32 \times 3$
# image holds 3,072 numbers; the three latents hold 4,096, 2,048 and 1,024.

# %%
bottleneck_runs = {}
for latent in tqdm((16, 8, 4), desc="latent sizes"):
    if latent == SMALL // 4:        # the shallow run with skips above has exactly these settings
        bottleneck_runs[latent] = (baseline_model, shallow_with[0].item())
        continue
    model, hist = short_run(latent_size=latent, seed=SEEDS[0])
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
       title="only the 4x4 latent is clearly worse")
sub = fig.add_subplot(1, 3, (2, 3))
show_images(torch.cat(pairs).cpu(), nrow=len(x_small), ax=sub,
            title="rows: input, then latents 16x16, 8x8, 4x4 (same short training)")
plt.tight_layout()
plt.show()

# %%
mse_of = {latent: m for latent, (_, m) in bottleneck_runs.items()}
seed_spread = (shallow_with.max() - shallow_with.min()).item()   # the 8x8 run, over the seeds
say("After so short a training every reconstruction is still blurry and pale; the pictures show where "
    "each model stands, not what it could reach. The numbers separate the latents (seed 0 each): the "
    f"$4 \\times 4$ latent, a third of the image's size, ends at {mse_of[4]:.3f}, "
    f"{mse_of[4] - mse_of[8]:.3f} above the $8 \\times 8$ one, while $16 \\times 16$ ({mse_of[16]:.3f}) and "
    f"$8 \\times 8$ ({mse_of[8]:.3f}) are much closer: {mse_of[8] - mse_of[16]:.3f} apart, about "
    f"{(mse_of[8] - mse_of[16]) / max(seed_spread, 1e-9):.1f} times the spread of the $8 \\times 8$ runs over "
    f"{n_seeds} seeds ({seed_spread:.3f}). The $16 \\times 16$ latent holds more numbers than the image, "
    f"yet its MSE is still {mse_of[16]:.3f}: at this stage the training, not the latent, limits the larger two.",
    (mse_of[4] - mse_of[8] > 5 * seed_spread, "the 4x4 latent is clearly worse (beyond the spread over seeds)"),
    (mse_of[4] - mse_of[8] > 3 * abs(mse_of[8] - mse_of[16]), "16x16 and 8x8 are much closer than 8x8 and 4x4"),
    (mse_of[16] > 0.05, "the 16x16 latent is still far from reproducing the image"))

# %% [markdown]
# A bottleneck that forces the model to choose what to keep is what the later lectures
# add on purpose: noise (VAE) or a codebook (VQ-VAE).

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

# %%
def lit_share(x):
    """Share of pixels that are not (nearly) black: x (B, 3, H, W) in [-1, 1] -> float."""
    return (x.clamp(-1, 1) > -0.5).any(dim=1).float().mean().item()


lit_real, lit_noise, lit_input = lit_share(x_rec), lit_share(decoded_noise), lit_share(x_test)
say(f"The noise decodes to coloured texture scattered over the whole picture, not to shapes: "
    f"{lit_noise:.0%} of its pixels are lit, against {lit_real:.0%} in the decoded test latents "
    f"({lit_input:.0%} in the inputs).",
    (lit_noise > 2 * lit_real, "the decoded noise is scattered texture, not a few shapes on black"))

# %% [markdown]
# Matching each value's range is not enough: a shape is a *pattern* across many latent
# positions and channels (edges that line up, a region of one colour), and independent
# noise has none of it. The histogram makes the mismatch visible even one value at a time.
# The channels have different scales, so each channel is first standardised with its own
# mean and standard deviation (the same ones the noise above used); pooled, the values of a
# Gaussian latent would then follow one standard normal.

# %%
standardised = ((z_real - mean) / std).cpu()                   # (B, C, h, w), per channel
values = standardised.flatten()
fig, ax = plt.subplots(figsize=(6.5, 3.5))
ax.hist(values.numpy(), bins=120, density=True, alpha=0.7, label="encoder latents, standardised per channel")
grid = torch.linspace(values.min().item(), values.max().item(), 400)
ax.plot(grid, torch.exp(-0.5 * grid**2) / math.sqrt(2 * math.pi), "r", label="standard normal")
ax.set(xlabel="latent value (standard deviations of its channel)", ylabel="density (log scale)",
       yscale="log", ylim=(1e-5, None), title="latent values are not Gaussian")
ax.legend(fontsize=8)
plt.show()
far = (values.abs() > 4).float().mean().item()
gaussian_far = math.erfc(4 / math.sqrt(2))
print(f"values more than 4 std from their channel's mean: {far:.2%} (a Gaussian: {gaussian_far:.4%})")

# %%
kurtosis = standardised.transpose(0, 1).flatten(1).pow(4).mean(1)        # per channel; Gaussian: 3
near_mean = (values.abs() < 0.25).float().mean().item()
gaussian_near = math.erf(0.25 / math.sqrt(2))
# Latent positions whose 4x4 pixel block is all black, and those with no shape pixel in the
# neighbouring blocks either: (B, h, w) bool.
lit_blocks = F.avg_pool2d((x_test > -1).any(dim=1, keepdim=True).float().cpu(), 4)
background = ~(lit_blocks > 0)[:, 0]
far_from_shapes = ~(F.max_pool2d(lit_blocks, 3, stride=1, padding=1) > 0)[:, 0]
extreme = (standardised.abs() > 4).any(dim=1)                                                     # (B, h, w)
n_extreme = max(extreme.sum().item(), 1)
extreme_on_shapes = (extreme & ~background).sum().item() / n_extreme
extreme_near_shapes = (extreme & ~far_from_shapes).sum().item() / n_extreme
say(f"The real latents form a sharper peak than the Gaussian, with much longer tails (the log scale shows "
    f"both): {near_mean:.0%} of the values lie within a quarter of a standard deviation of their channel's "
    f"mean (a Gaussian: {gaussian_near:.0%}), and {far:.2%} lie beyond 4 (a Gaussian: {gaussian_far:.4%}). "
    f"{int((kurtosis > 3).sum())} of the {len(kurtosis)} channels are heavy-tailed on their own (kurtosis "
    f"above a Gaussian's 3; median {kurtosis.median():.1f}). Most latent positions see plain background "
    f"({background.float().mean():.0%} of them) and give ordinary values, while the extreme ones come from the "
    f"shapes: {extreme_on_shapes:.0%} of the positions with a value beyond 4 lie on a shape and "
    f"{extreme_near_shapes:.0%} on or next to one.",
    (near_mean > gaussian_near and far > 10 * gaussian_far, "a sharper peak than the Gaussian, with much longer tails"),
    ((kurtosis > 3).float().mean() > 0.5, "the heavy tails are not an artefact of pooling channels of different scales"),
    (extreme_near_shapes > 0.85 and extreme_on_shapes > 2 * (1 - background.float().mean()),
     "the extreme values come from the shapes, the ordinary ones from the background"))

# %% [markdown]
# A Gaussian with the same mean and variance therefore spreads its draws where the real
# latents rarely are. Worse, the set of real latents is a thin, structured subset of a
# 16,384-dimensional space (for this model; 65,536 for the lecture's): almost every random
# point lies far from it, where the decoder was never trained.
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
# 2. In section 5 the $16 \times 16$ and $8 \times 8$ latents ended close together after a short
#    run, the $4 \times 4$ one clearly behind. What would you expect after much longer
#    training, and why could the $4 \times 4$ latent never catch up?
# 3. The PSNR histogram showed that images with more shape score lower. If you compared two
#    models on two *different* random samples of 16 test images, how could that mislead you?
# 4. Why does a plain autoencoder have no reason to keep the pinholes, and no reason to
#    drop them either?
#
# **Next:** [exercise 3](../exercises/ex03_autoencoder.ipynb) (the autoencoder exercise). Lecture 4 turns the
# autoencoder into a VAE, whose latents can be sampled.

# %%
print(summary())
