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
#   and how to judge it: loss curves and reconstructions of test images it never saw;
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
                           SkipBlockEncoder, load_or_train, pick, psnr, quick_mode, seed_everything)
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
IMAGE_SIZE = pick(normal=64, quick=32)
NUM_IMAGES = pick(normal=20_000, quick=1_024)   # the last 200 are the test split
train_set = ShapesDataset("train", image_size=IMAGE_SIZE, num_images=NUM_IMAGES)
test_set = ShapesDataset("test", image_size=IMAGE_SIZE, num_images=NUM_IMAGES)
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
# and a block whose $f$ is still near zero does no harm. The lecture's encoder block has
# $f$ = two rounds of (3x3 conv, GroupNorm, ReLU). When it also halves the resolution, the
# *same* strided 1x1 convolution is applied to both $f(x)$ and $x$, so that the two paths
# still line up pixel for pixel before they are added.
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
        return self.downsampler(f) + self.downsampler(x)  # residual: identity + correction


package_block = SkipBlockEncoder(32, 32, downsample=True)
plain_block = PlainSkipDown(32)
plain_block.load_state_dict(package_block.state_dict())  # same names, same shapes
x = torch.randn(2, 32, 16, 16)
print("input", tuple(x.shape), "-> output", tuple(plain_block(x).shape))
print("plain block == SkipBlockEncoder:", torch.allclose(plain_block(x), package_block(x), atol=1e-6))

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
# process with `sys.exit` instead, which in a notebook kills the kernel.

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
autoencoder, history = load_or_train(
    CHECKPOINTS / "autoencoder_shapes" / "checkpoint.pt",
    lambda: Autoencoder(image_size=IMAGE_SIZE, latent_size=IMAGE_SIZE // 4,
                        base_channels=pick(normal=16, quick=8)),
    train_set, test_set, steps=pick(normal=4000, quick=8), batch_size=pick(normal=32, quick=16),
    lr=pick(normal=1e-3, quick=2e-3), scheduler="cosineannealinglr",
    log_every=pick(normal=25, quick=3), eval_batches=pick(normal=None, quick=1))
device = next(autoencoder.parameters()).device
print(f"trained for {history['train/loss'][-1][0]} steps;", autoencoder.hparams)
print(f"{sum(p.numel() for p in autoencoder.parameters()):,} parameters")

# %% [markdown]
# ### Loss curves
#
# `train/recon` is the running mean of the training loss between log points; `test/recon`
# is the same loss on the held-out images, computed at the end of training (more often if
# `eval_every` is set). A test loss close to the training loss means the model did not just
# memorise its training images. The log scale shows that the loss keeps falling long after
# the first, steep drop.

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


# %%
def input_output_pairs(x, x_hat):
    """(B, C, H, W) twice -> (B, C, H, 2W): each input with its output on its right.
    (Later lectures import the same helper from `dlstudio_lite.plot`.)"""
    return torch.cat([x, x_hat.clamp(-1, 1)], dim=3)


x_test = test_set.tensors(16).to(device)
with torch.no_grad():
    x_rec = autoencoder.reconstruct(x_test)
show_images(input_output_pairs(x_test, x_rec), nrow=4,
            title=f"test images: input | output   (PSNR {psnr(x_rec, x_test):.1f} dB)", scale=1.5)
plt.show()

# %% [markdown]
# ## 5. Why an autoencoder is not a generative model
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
#
# ## 6. The trained result
#
# Thirty-two more unseen test images through the trained autoencoder.

# %%
x_more = test_set.tensors(48)[16:48].to(device)
with torch.no_grad():
    x_more_rec = autoencoder.reconstruct(x_more)
per_image_mse = (x_more_rec - x_more).pow(2).flatten(1).mean(1)
show_images(input_output_pairs(x_more, x_more_rec), nrow=4, scale=1.5,
            title=f"input | output on 32 test images: mean MSE {per_image_mse.mean():.4f}, "
                  f"PSNR {psnr(x_more_rec, x_more):.1f} dB")
plt.show()

# %% [markdown]
# ## Summary
#
# - A SkipBlock adds a learned correction to its input; downsampling applies one strided
#   1x1 conv to both paths, widening stacks the identity on itself, and the decoder's blocks
#   mirror this with nearest-neighbour upsampling and a sliced identity.
# - An encoder with ratio $r$ maps $(3, H, W)$ to $(\text{base}\cdot r, H/r, W/r)$; with the
#   lecture's widths the latent holds *more* numbers than the image, so the bottleneck is
#   in resolution, not in size.
# - Trained with per-pixel MSE, the autoencoder reconstructs unseen shapes well.
# - It is not generative: its latents form an irregular set that random (even
#   range-matched) noise misses, so decoded noise is texture, not shapes.
#
# **Next:** exercise 3 in `exercises/` (the autoencoder exercise). Lecture 4 turns the
# autoencoder into a VAE, whose latents can be sampled.
