# ---
# jupyter:
#   dlstudio_lite:
#     exercise: 03_autoencoder
#     title: 'Exercise 3: autoencoder shapes and the SkipBlock'
#   jupytext:
#     formats: py:percent
#     notebook_metadata_filter: dlstudio_lite
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Exercise 3: autoencoder shapes and the SkipBlock
#
# The course's encoder shrinks a `64 x 64` image to a small grid of feature vectors with
# convolutions, and the decoder grows it back. Before training anything you should be able
# to say what shape comes out of every layer: most "it does not run" bugs in encoders and
# decoders are shape bugs. The building block is a residual *SkipBlock*: a couple of
# convolutions plus a shortcut that carries the input around them, so that gradients reach
# early layers even in a deep encoder.

# %%
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(0)

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
# ## Question 1 (2 points): encoder and decoder shape arithmetic
#
# A convolution with kernel size `k`, stride `s` and padding `p` turns a side of length `n`
# into $\left\lfloor \frac{n + 2p - k}{s} \right\rfloor + 1$. A decoder that grows the grid
# with a *transposed* convolution (`nn.ConvTranspose2d`) runs that arithmetic backwards:
# $(n - 1)\,s - 2p + k + \text{output\_padding}$.
# Write both functions; each returns an `int`.

# %%
def conv_output_size(size, kernel_size, stride=1, padding=0):
    """Output side length of a convolution on an input side of length `size` (an int)."""
    ### BEGIN SOLUTION
    return (size + 2 * padding - kernel_size) // stride + 1
    ### END SOLUTION


def conv_transpose_output_size(size, kernel_size, stride=1, padding=0, output_padding=0):
    """Output side length of a transposed convolution on an input side of length `size` (an int)."""
    ### BEGIN SOLUTION
    return (size - 1) * stride - 2 * padding + kernel_size + output_padding
    ### END SOLUTION


# %% tags=["check"]
# Check: a 3x3 "same" convolution keeps 64; a 1x1 convolution with stride 2 halves it.
for args, expected in (((64, 3, 1, 1), 64), ((64, 1, 2, 0), 32), ((64, 4, 2, 1), 32)):
    got = conv_output_size(*args)
    assert got == expected and isinstance(got, int), \
        f"conv_output_size{args}: expected {expected} (an int), got {got!r}"
# A 4x4 transposed convolution with stride 2 and padding 1 doubles the side: 8 -> 16.
got = conv_transpose_output_size(8, 4, 2, 1)
assert got == 16 and isinstance(got, int), f"conv_transpose_output_size(8, 4, 2, 1): expected 16 (an int), got {got!r}"
# output_padding adds the one row a stride-2 convolution dropped: 7 -> 14, not 13.
got = conv_transpose_output_size(7, 3, 2, 1, 1)
assert got == 14, f"conv_transpose_output_size(7, 3, 2, 1, output_padding=1): expected 14, got {got!r}"
print("shape arithmetic: the checks passed")

# %% tags=["hidden-tests"] question="conv_output_size" points=2
def verdict(r, what, actual, need_int):
    got = r.value
    if need_int:
        assert isinstance(got, int) and not isinstance(got, bool), f"expected an int, got {type(got).__name__}"
    assert got == actual, f"{what}: the size is wrong"


g = rng(1)
for n in (5, 7, 16, *torch.randint(8, 64, (2,), generator=g).tolist()):   # two sizes new in every run
    for k, s, p in ((3, 1, 1), (3, 2, 1), (4, 2, 1), (5, 3, 2), (1, 2, 0), (2, 2, 0), (7, 1, 3)):
        if n + 2 * p < k:
            continue
        actual = nn.Conv2d(1, 1, k, stride=s, padding=p)(torch.zeros(1, 1, n, n)).shape[-1]
        check(Call("conv_output_size", n, k, s, p), verdict,
              what=f"size {n}, kernel {k}, stride {s}, padding {p}", actual=actual, need_int=True)
        for op in range(s):  # output_padding must be smaller than the stride
            actual = nn.ConvTranspose2d(1, 1, k, stride=s, padding=p, output_padding=op)(torch.zeros(1, 1, n, n)).shape[-1]
            check(Call("conv_transpose_output_size", n, k, s, p, op), verdict, need_int=False, actual=actual,
                  what=f"transposed: size {n}, kernel {k}, stride {s}, padding {p}, output_padding {op}")

# %% [markdown]
# ## Question 2 (4 points): the downsampling SkipBlock
#
# `SkipBlockDown` below already creates its layers. Write its `forward`:
#
# 1. main path: `conv1 -> norm1 -> ReLU -> conv2 -> norm2 -> ReLU`;
# 2. if `downsample`, halve the height and width of the main path with `self.down` and of
#    the shortcut (the input `x`) with `self.down_identity`;
# 3. if the block doubles the channels (`out_ch == 2 * in_ch`), the shortcut has too few
#    channels: concatenate it with itself along the channel dimension;
# 4. return main path + shortcut.
#
# Input `(B, in_ch, H, W)`; output `(B, out_ch, H/2, W/2)` with `downsample`, else
# `(B, out_ch, H, W)`.

# %%
class SkipBlockDown(nn.Module):
    """Residual block (B, in_ch, H, W) -> (B, out_ch, H', W'), out_ch in {in_ch, 2 * in_ch}."""

    def __init__(self, in_ch, out_ch, downsample=False):
        super().__init__()
        if out_ch not in (in_ch, 2 * in_ch):
            raise ValueError(f"out_ch must be in_ch or 2 * in_ch ({in_ch} or {2 * in_ch}), got {out_ch}")
        self.in_ch, self.out_ch, self.downsample = in_ch, out_ch, downsample
        groups = math.gcd(8, out_ch)  # GroupNorm works with the tiny batches of this course
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.norm1 = nn.GroupNorm(groups, out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.norm2 = nn.GroupNorm(groups, out_ch)
        self.down = nn.Conv2d(out_ch, out_ch, 1, stride=2)
        self.down_identity = nn.Conv2d(in_ch, in_ch, 1, stride=2)

    def forward(self, x):
        ### BEGIN SOLUTION
        identity = x
        out = F.relu(self.norm1(self.conv1(x)))
        out = F.relu(self.norm2(self.conv2(out)))
        if self.downsample:
            out = self.down(out)
            identity = self.down_identity(identity)
        if self.out_ch == 2 * self.in_ch:
            identity = torch.cat([identity, identity], dim=1)
        return out + identity
        ### END SOLUTION


# %% tags=["check"]
# Check 1: output shapes.
x = torch.randn(2, 8, 16, 16)
for out_ch, down, shape in ((8, False, (2, 8, 16, 16)), (16, True, (2, 16, 8, 8)), (16, False, (2, 16, 16, 16))):
    y = SkipBlockDown(8, out_ch, down)(x)
    assert tuple(y.shape) == shape, f"SkipBlockDown(8, {out_ch}, downsample={down}): expected {shape}, got {tuple(y.shape)}"
# Check 2: with the main path switched off (zero weights), the block must pass its input through.
block = SkipBlockDown(8, 8)
with torch.no_grad():
    for conv in (block.conv1, block.conv2):
        conv.weight.zero_()
        conv.bias.zero_()
y = block(x)
assert torch.allclose(y, x, atol=1e-6), f"main path off: expected the input back, max difference {float((y - x).abs().max()):.3g} (is the shortcut added?)"
# Check 3: a block that halves the grid and doubles the channels, step by step as specified.
block = SkipBlockDown(8, 16, downsample=True)
x = torch.randn(1, 8, 6, 10)                                       # one image, not square
with torch.no_grad():
    main = block.down(F.relu(block.norm2(block.conv2(F.relu(block.norm1(block.conv1(x)))))))
    shortcut = block.down_identity(x)
    expect_close("SkipBlockDown(8, 16, downsample=True) on (1, 8, 6, 10)", block(x), main + torch.cat([shortcut, shortcut], dim=1))
print("SkipBlockDown: the checks passed")

# %% tags=["hidden-tests"] question="skip_block" points=4
g = rng(4)


def verdict(r, name, x, expected):
    got = r.tensor()
    assert tuple(got.shape) == tuple(expected.shape), \
        f"{name} on (3, {x.shape[1]}, 6, 10): expected shape {tuple(expected.shape)}, got {tuple(got.shape)}"
    assert torch.allclose(got, expected, atol=1e-5), f"{name}: the values differ from main path + shortcut"
    (x_grad,) = r.grad(0)
    assert x_grad is not None and x_grad.abs().sum() > 0, "no gradient reaches the input"


for in_ch, out_ch, down in ((8, 8, False), (8, 16, True), (4, 8, False), (8, 8, True)):
    block = ref.SkipBlockDown(in_ch, out_ch, down)   # the reference, with random weights
    params = {name: torch.randn(p.shape, generator=g) * 0.3 for name, p in block.named_parameters()}
    block.load_state_dict(params, strict=False)
    x = torch.randn(3, in_ch, 6, 10, generator=g, requires_grad=True)
    with torch.no_grad():
        expected = block(x)
    call = Call(Module("SkipBlockDown", (in_ch, out_ch, down), params=params), x,
                grads=[Grad([(Out(), torch.ones_like(expected))], wrt=[x])])
    check(call, verdict, name=f"SkipBlockDown({in_ch}, {out_ch}, downsample={down})", x=x, expected=expected)

# %% [markdown]
# ## A small encoder
#
# Stack the block into a tiny encoder for `32 x 32` images and compare each stage's shape
# with what your functions predict (the strided 1x1 convolutions set the size).

# %% tags=["uses-answers"]
encoder = nn.Sequential(
    nn.Conv2d(3, 16, 3, padding=1),
    SkipBlockDown(16, 16),
    SkipBlockDown(16, 32, downsample=True),
    SkipBlockDown(32, 64, downsample=True),
)
h = torch.randn(1, 3, 32, 32)
size = 32
for layer in encoder:
    h = layer(h)
    if isinstance(layer, SkipBlockDown) and layer.downsample:
        size = conv_output_size(size, 1, 2, 0)
    print(f"{type(layer).__name__:16s} -> {tuple(h.shape)}   predicted side {size}")
# ...and a decoder stage that doubles the side back with a transposed convolution.
up = nn.ConvTranspose2d(64, 32, kernel_size=4, stride=2, padding=1)
print(f"{'ConvTranspose2d':16s} -> {tuple(up(h).shape)}   predicted side {conv_transpose_output_size(size, 4, 2, 1)}")
