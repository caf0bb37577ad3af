# ---
# jupyter:
#   dlstudio_lite:
#     exercise: ex03_autoencoder
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
# ## Question 1 (2 points): the encoder's shape arithmetic
#
# A convolution with kernel size `k`, stride `s` and padding `p` turns a side of length `n`
# into $\left\lfloor \frac{n + 2p - k}{s} \right\rfloor + 1$. Write it as `conv_output_size`.
#
# Then write `encoder_output_shape(image_size, base_channels, num_stages)`: the shape
# `(C, h, w)` that the course's `Encoder` (lecture 3, section 3) gives a square RGB image of
# side `image_size`. It starts with a 3x3 convolution (padding 1) from 3 to `base_channels`
# channels, then repeats `num_stages` times: a downsampling SkipBlock, whose strided 1x1
# convolution sets the new side, followed by a SkipBlock that doubles the channels (its 3x3
# convolutions have padding 1). Compute every side with `conv_output_size`, and return a
# tuple of three `int`s.

# %%
def conv_output_size(size, kernel_size, stride=1, padding=0):
    """Output side length of a convolution on an input side of length `size` (an int)."""
    ### BEGIN SOLUTION
    return (size + 2 * padding - kernel_size) // stride + 1
    ### END SOLUTION


def encoder_output_shape(image_size, base_channels, num_stages):
    """(C, h, w) of the course's Encoder for a (3, image_size, image_size) image: a tuple of ints."""
    ### BEGIN SOLUTION
    side = conv_output_size(image_size, 3, 1, 1)      # the first 3x3 conv keeps the side
    channels = base_channels
    for _ in range(num_stages):
        side = conv_output_size(side, 1, 2, 0)         # the downsampling block's strided 1x1 conv
        channels *= 2                                  # the channel-doubling block
    return (channels, side, side)
    ### END SOLUTION


# %% tags=["check"]
# Check: a 3x3 "same" convolution keeps 64; a 1x1 and a 4x4 convolution with stride 2 halve it.
with skip_if_unanswered():
    for args, expected in (((64, 3, 1, 1), 64), ((64, 1, 2, 0), 32), ((64, 4, 2, 1), 32), ((7, 1, 2, 0), 4)):
        got = conv_output_size(*args)
        assert got == expected and isinstance(got, int), \
            f"conv_output_size{args}: expected {expected} (an int), got {got!r}"
    # The lecture's shapes: 64 x 64 with base 64 and 1, 2 or 3 stages; then an odd side on the way.
    for args, expected in (((64, 64, 1), (128, 32, 32)), ((64, 64, 2), (256, 16, 16)), ((64, 64, 3), (512, 8, 8)),
                           ((28, 8, 3), (64, 4, 4))):
        got = encoder_output_shape(*args)
        assert got == expected and all(isinstance(n, int) for n in got), \
            f"encoder_output_shape{args}: expected {expected} (ints), got {got!r}" + \
            (" (a stride-2 1x1 convolution turns a side of 7 into 4, not 3)" if args[0] == 28 else "")
    print("shape arithmetic: the checks passed")

# %% tags=["hidden-tests"] question="conv_output_size" points=2
def verdict(r, what, actual, need_int):
    got = r.value
    if need_int:
        assert isinstance(got, int) and not isinstance(got, bool), f"expected an int, got {type(got).__name__}"
    else:
        assert isinstance(got, (tuple, list)) and len(got) == 3, f"{what}: expected a tuple (C, h, w), got {got!r}"
        got = tuple(got)
        assert all(isinstance(n, int) and not isinstance(n, bool) for n in got), f"{what}: expected ints, got {got!r}"
    assert got == actual, f"{what}: the size is wrong"


g = rng(1)
for n in (5, 7, 16, *torch.randint(8, 64, (2,), generator=g).tolist()):   # two sizes new in every run
    for k, s, p in ((3, 1, 1), (3, 2, 1), (4, 2, 1), (5, 3, 2), (1, 2, 0), (2, 2, 0), (7, 1, 3)):
        if n + 2 * p < k:
            continue
        actual = nn.Conv2d(1, 1, k, stride=s, padding=p)(torch.zeros(1, 1, n, n)).shape[-1]
        check(Call("conv_output_size", n, k, s, p), verdict,
              what=f"size {n}, kernel {k}, stride {s}, padding {p}", actual=actual, need_int=True)
# The encoder's layers themselves, on the meta device (shapes without arithmetic).
for size, base, stages in ((64, 64, 3), (32, 16, 1), (28, 8, 3), (50, 4, 2), (9, 3, 0)):
    layers, c = [nn.Conv2d(3, base, 3, padding=1, device="meta")], base
    for _ in range(stages):
        layers += [nn.Conv2d(c, c, 1, stride=2, device="meta"), nn.Conv2d(c, 2 * c, 3, padding=1, device="meta")]
        c *= 2
    actual = tuple(nn.Sequential(*layers)(torch.zeros(1, 3, size, size, device="meta")).shape[1:])
    check(Call("encoder_output_shape", size, base, stages), verdict,
          what=f"a {size} x {size} image, base {base}, {stages} stages", actual=actual, need_int=False)

# %% [markdown]
# ## Question 2 (4 points): the encoder's SkipBlock
#
# `SkipBlock` below is the encoder block of lecture 3 (section 2) and of the package's
# `SkipBlockEncoder`; it already creates its layers. It either keeps the width
# (`out_ch == in_ch`), and may then halve the height and width (`downsample`), or it
# doubles the width (`out_ch == 2 * in_ch`) at the same size: never both at once, which the
# constructor refuses. Write its `forward`:
#
# 1. main path: `conv1 -> norm1 -> ReLU`, then, in a block that keeps the width,
#    `conv2 -> norm2 -> ReLU`;
# 2. if `downsample`, apply the **one** strided 1x1 convolution `self.downsampler` to both
#    the main path and the shortcut (the input `x`): the same convolution on both paths
#    keeps them aligned pixel for pixel;
# 3. if the block doubles the channels, the shortcut has too few of them: concatenate it
#    with itself along the channel dimension;
# 4. return main path + shortcut.
#
# Input `(B, in_ch, H, W)`; output `(B, out_ch, H/2, W/2)` with `downsample`, else
# `(B, out_ch, H, W)`.

# %%
class SkipBlock(nn.Module):
    """Encoder block (B, in_ch, H, W) -> (B, out_ch, H', W'): keeps the width (H' = H/2 if
    downsample) or doubles it (H' = H)."""

    def __init__(self, in_ch, out_ch, downsample=False):
        super().__init__()
        if out_ch not in (in_ch, 2 * in_ch):
            raise ValueError(f"out_ch must be in_ch or 2 * in_ch ({in_ch} or {2 * in_ch}), got {out_ch}")
        if downsample and out_ch != in_ch:
            raise ValueError(f"a downsampling block keeps the width: expected out_ch == in_ch == {in_ch}, got {out_ch}")
        self.in_ch, self.out_ch, self.downsample = in_ch, out_ch, downsample
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.norm1 = nn.GroupNorm(math.gcd(32, out_ch), out_ch)
        if in_ch == out_ch:  # as in the package, only a block that keeps the width has a second conv
            self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
            self.norm2 = nn.GroupNorm(math.gcd(32, out_ch), out_ch)
        if downsample:
            self.downsampler = nn.Conv2d(in_ch, out_ch, 1, stride=2)  # one conv, shared by both paths

    def forward(self, x):
        ### BEGIN SOLUTION
        identity = x
        out = F.relu(self.norm1(self.conv1(x)))
        if self.in_ch == self.out_ch:
            out = F.relu(self.norm2(self.conv2(out)))
        if self.downsample:
            out = self.downsampler(out)
            identity = self.downsampler(identity)
        if self.out_ch == 2 * self.in_ch:
            identity = torch.cat([identity, identity], dim=1)
        return out + identity
        ### END SOLUTION


# %% tags=["check"]
# Check 1: output shapes.
with skip_if_unanswered():
    x = torch.randn(2, 8, 16, 16)
    for out_ch, down, shape in ((8, False, (2, 8, 16, 16)), (8, True, (2, 8, 8, 8)), (16, False, (2, 16, 16, 16))):
        y = SkipBlock(8, out_ch, down)(x)
        assert tuple(y.shape) == shape, f"SkipBlock(8, {out_ch}, downsample={down}): expected {shape}, got {tuple(y.shape)}"
    # Check 2: with the main path switched off (zero weights), the block must pass its input through.
    block = SkipBlock(8, 8)
    with torch.no_grad():
        for conv in (block.conv1, block.conv2):
            conv.weight.zero_()
            conv.bias.zero_()
    y = block(x)
    assert torch.allclose(y, x, atol=1e-6), f"main path off: expected the input back, max difference {float((y - x).abs().max()):.3g} (is the shortcut added?)"
    # Check 3: a block that halves the grid, step by step as specified: D(f(x)) + D(x).
    block = SkipBlock(8, 8, downsample=True)
    x = torch.randn(1, 8, 6, 10)                                       # one image, not square
    with torch.no_grad():
        main = block.downsampler(F.relu(block.norm2(block.conv2(F.relu(block.norm1(block.conv1(x)))))))
        expect_close("SkipBlock(8, 8, downsample=True) on (1, 8, 6, 10)", block(x), main + block.downsampler(x))
    # Check 4: a block that doubles the channels: f(x) + [x, x].
    block = SkipBlock(8, 16)
    with torch.no_grad():
        main = F.relu(block.norm1(block.conv1(x)))
        expect_close("SkipBlock(8, 16) on (1, 8, 6, 10)", block(x), main + torch.cat([x, x], dim=1))
    print("SkipBlock: the checks passed")

# %% tags=["hidden-tests"] question="skip_block" points=4
g = rng(4)


def verdict(r, name, x, expected):
    got = r.tensor()
    assert tuple(got.shape) == tuple(expected.shape), \
        f"{name} on (3, {x.shape[1]}, 6, 10): expected shape {tuple(expected.shape)}, got {tuple(got.shape)}"
    assert torch.allclose(got, expected, atol=1e-5), f"{name}: the values differ from main path + shortcut"
    (x_grad,) = r.grad(0)
    assert x_grad is not None and x_grad.abs().sum() > 0, "no gradient reaches the input"


for in_ch, out_ch, down in ((8, 8, False), (8, 16, False), (4, 8, False), (8, 8, True), (16, 16, True)):
    block = ref.SkipBlock(in_ch, out_ch, down)   # the reference, with random weights
    params = {name: torch.randn(p.shape, generator=g) * 0.3 for name, p in block.named_parameters()}
    block.load_state_dict(params, strict=False)
    x = torch.randn(3, in_ch, 6, 10, generator=g, requires_grad=True)
    with torch.no_grad():
        expected = block(x)
    call = Call(Module("SkipBlock", (in_ch, out_ch, down), params=params), x,
                grads=[Grad([(Out(), torch.ones_like(expected))], wrt=[x])])
    check(call, verdict, name=f"SkipBlock({in_ch}, {out_ch}, downsample={down})", x=x, expected=expected)

# %% [markdown]
# ## A small encoder
#
# Stack the block into a tiny encoder, as the package's `Encoder` does (three stages), and
# compare each stage's shape with what your `encoder_output_shape` predicts. On a
# `28 x 28` image the third stage meets an odd side, 7, and rounds it up to 4; a decoder
# that doubles the side three times then gives `32 x 32`, not `28 x 28`. That is why the
# course's image sides are powers of two (the package's `Encoder` accepts only sizes that
# halve evenly).

# %% tags=["uses-answers"]
with skip_if_unanswered():
    encoder = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        SkipBlock(16, 16, downsample=True), SkipBlock(16, 32),
        SkipBlock(32, 32, downsample=True), SkipBlock(32, 64),
        SkipBlock(64, 64, downsample=True), SkipBlock(64, 128),
    )
    for size in (32, 28):
        h = torch.randn(1, 3, size, size)
        print(f"a {size} x {size} image:")
        stages = 0
        for layer in encoder:
            h = layer(h)
            stages += isinstance(layer, SkipBlock) and layer.downsample
            if not (isinstance(layer, SkipBlock) and layer.downsample):
                predicted = encoder_output_shape(size, 16, stages)
                print(f"  {type(layer).__name__:10s} -> {tuple(h.shape[1:])}   predicted {predicted}")
