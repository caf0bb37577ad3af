# ---
# jupyter:
#   dlstudio_lite:
#     exercise: ex09_pixelcnn
#     title: 'Exercise 9: the masked convolution of PixelCNN'
#   jupytext:
#     formats: py:percent
#     notebook_metadata_filter: dlstudio_lite
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Exercise 9: the masked convolution of PixelCNN
#
# This exercise goes with appendix lecture 9 (section 1, masked convolutions and their
# receptive field).
#
# A prior over a grid of codes (lecture 6) generates the codes one at a time in *raster
# order*: row by row from the top, left to right within a row. It models
#
# $$p(x) = \prod_i p(x_i \mid x_1, \dots, x_{i-1}),$$
#
# so the prediction for position $i$ may use the positions that come *earlier* and nothing
# else. PixelCNN computes all these predictions in one pass with ordinary convolutions
# whose kernels are multiplied by a fixed 0/1 **mask**: the taps on later positions are zero.
#
# * **Type A** (the first layer) also zeroes the centre tap, so the output at a position
#   never sees the value it has to predict.
# * **Type B** (every later layer) keeps the centre: there it reads the previous layer's
#   features at the same position, which were computed from earlier positions only.
#
# You will write the mask, the masked convolution, and then measure, with gradients, which
# positions a stack of masked convolutions really sees, and find the **blind spot** it
# leaves. The course package has its own `dlstudio_lite.pixelcnn`; write these yourself,
# the point is to see why each 1 and each 0 sits where it does. Write your code where it
# says `# YOUR CODE HERE` (delete the `raise NotImplementedError`), then run the check cell
# that follows each question. The grader runs more tests than the checks you see.

# %%
import contextlib

import torch
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
# ## Question 1 (3 points): the mask
#
# Write `causal_mask(kernel_size, mask_type)` for an odd `kernel_size` `k` and `mask_type`
# `"A"` or `"B"`: a `(k, k)` float tensor of zeros and ones, with a one on every tap that
# sits on an earlier position than the centre. Row 0 of the kernel is the top row, column 0
# the left column (the same layout as the image), so "earlier" means every row above the
# centre, and the taps left of the centre in the centre row. The centre itself is 1 for
# type `"B"` and 0 for type `"A"`. For `k = 3`:
#
# ```text
# type A      type B
# 1 1 1       1 1 1
# 1 0 0       1 1 0
# 0 0 0       0 0 0
# ```

# %%
def causal_mask(kernel_size, mask_type):
    """The (k, k) 0/1 float mask of a masked convolution: ones on the taps before the centre."""
    ### BEGIN SOLUTION
    c = kernel_size // 2
    mask = torch.zeros(kernel_size, kernel_size)
    mask[:c, :] = 1.0                  # every row above the centre row
    mask[c, :c] = 1.0                  # the centre row, left of the centre
    if mask_type == "B":
        mask[c, c] = 1.0               # type B also reads the centre
    return mask
    ### END SOLUTION


# %% tags=["check"]
with skip_if_unanswered():
    expect_close('causal_mask(3, "A")', causal_mask(3, "A"), [[1., 1., 1.], [1., 0., 0.], [0., 0., 0.]])
    expect_close('causal_mask(3, "B")', causal_mask(3, "B"), [[1., 1., 1.], [1., 1., 0.], [0., 0., 0.]])
    expect_close('causal_mask(5, "B")', causal_mask(5, "B"),
                 [[1., 1., 1., 1., 1.], [1., 1., 1., 1., 1.], [1., 1., 1., 0., 0.], [0.] * 5, [0.] * 5])
    expect_close('causal_mask(1, "A") (a 1 x 1 kernel of type A sees nothing)', causal_mask(1, "A"), [[0.]])
    assert causal_mask(5, "A").is_floating_point(), f"the mask should be a float tensor, got {causal_mask(5, 'A').dtype}"
    print("causal_mask: the checks passed")

# %% tags=["hidden-tests"] question="causal_mask" points=3
from dlstudio_lite.pixelcnn import causal_mask as reference_mask


def verdict(r, k, mask_type):
    mask = r.tensor()
    name = f'causal_mask({k}, "{mask_type}")'
    assert tuple(mask.shape) == (k, k), f"{name}: expected shape {(k, k)}, got {tuple(mask.shape)}"
    assert mask.is_floating_point(), f"{name}: expected a float tensor, got {mask.dtype}"
    m, c = mask.detach().float(), k // 2
    # One property per message: what is wrong, never the mask itself.
    assert torch.equal(m[:c], torch.ones(c, k)), f"{name}: the rows above the centre must be all ones"
    assert torch.equal(m[c, :c], torch.ones(c)), f"{name}: in the centre row, the taps left of the centre must be ones"
    assert float(m[c, c]) == float(mask_type == "B"), \
        f"{name}: the centre tap must be {'1 (type B sees the current pixel)' if mask_type == 'B' else '0 (type A hides the current pixel)'}"
    assert not m[c, c + 1:].any() and not m[c + 1:].any(), f"{name}: the taps after the centre (right of it, and the rows below) must be zero"
    assert torch.equal(m, reference_mask(k, mask_type)), f"{name}: the mask holds values other than 0 and 1"


g = rng(1)
for k in sorted({1, 3, 5, *(2 * int(n) + 1 for n in torch.randint(3, 10, (2,), generator=g))}):   # two sizes new every run
    for mask_type in ("A", "B"):
        check(Call("causal_mask", k, mask_type), verdict, k=k, mask_type=mask_type)

# %% [markdown]
# ## Question 2 (3 points): the masked convolution
#
# Write `masked_conv2d(x, weight, bias, mask)`: the convolution of `x (B, C_in, H, W)` with
# the kernel `weight (C_out, C_in, k, k)` multiplied by the `(k, k)` `mask` (the same mask
# for every pair of channels), plus `bias (C_out,)` (or no bias when it is `None`), with
# zero padding `k // 2` so that the output keeps the size `(B, C_out, H, W)`.
#
# The mask is applied to the kernel on every call, not once and for all: the weights are
# trained, and the gradient of a masked tap must be zero so that training never turns it
# back on. `F.conv2d` does the convolution (like every deep-learning library it computes a
# cross-correlation: the kernel is *not* flipped). The mask comes as an argument, so this
# question is graded on its own, whatever your answer to question 1.

# %%
def masked_conv2d(x, weight, bias, mask):
    """Masked 'same' convolution: (B, C_in, H, W), (C_out, C_in, k, k), (C_out,) or None, (k, k) -> (B, C_out, H, W)."""
    ### BEGIN SOLUTION
    k = weight.shape[-1]
    return F.conv2d(x, weight * mask, bias, padding=k // 2)
    ### END SOLUTION


# %% tags=["check"]
with skip_if_unanswered():
    mask_A = torch.tensor([[1., 1., 1.], [1., 0., 0.], [0., 0., 0.]])
    x = torch.randn(2, 3, 5, 6, requires_grad=True)
    weight = torch.randn(4, 3, 3, 3, requires_grad=True)
    bias = torch.randn(4, requires_grad=True)
    weight_before = weight.detach().clone()
    out = masked_conv2d(x, weight, bias, mask_A)
    assert tuple(out.shape) == (2, 4, 5, 6), f"expected shape (2, 4, 5, 6), got {tuple(out.shape)}"
    assert torch.equal(weight.detach(), weight_before), "masked_conv2d changed the weights it was given: mask a copy"
    # The same thing, one output position at a time: the 3 x 3 patch around (i, j) of the
    # zero-padded input, times the masked kernel, summed, plus the bias.
    padded = F.pad(x.detach(), (1, 1, 1, 1))
    expected = torch.zeros(2, 4, 5, 6)
    for i in range(5):
        for j in range(6):
            patch = padded[:, :, i:i + 3, j:j + 3]                                   # (B, C_in, 3, 3)
            expected[:, :, i, j] = torch.einsum("bcuv,ocuv->bo", patch, weight_before * mask_A) + bias.detach()
    expect_close("masked_conv2d(x, weight, bias, mask_A)", out, expected, rtol=1e-4, atol=1e-5)
    (out * torch.randn(2, 4, 5, 6)).sum().backward()
    expect_close("weight.grad on the masked taps (type A: the centre and everything after it)",
                 weight.grad * (1 - mask_A), torch.zeros(4, 3, 3, 3))
    assert bias.grad is not None and x.grad is not None, "no gradient reaches the bias or the input"
    print("masked_conv2d: the checks passed")

# %% tags=["hidden-tests"] question="masked_conv2d" points=3
from dlstudio_lite.pixelcnn import causal_mask as reference_mask

g = rng(7)


def verdict(r, x, weight, bias, mask, upstream, label):
    B, _, H, W = x.shape
    C_out, _, k, _ = weight.shape
    out = r.tensor()
    assert tuple(out.shape) == (B, C_out, H, W), f"{label}: expected shape {(B, C_out, H, W)}, got {tuple(out.shape)}"
    assert out.dtype == x.dtype, f"{label}: expected dtype {x.dtype}, got {out.dtype}"
    leaves = [t.detach().clone().requires_grad_() for t in (x, weight)]
    b = None if bias is None else bias.detach().clone().requires_grad_()
    want = F.conv2d(leaves[0], leaves[1] * mask, b, padding=k // 2)
    assert torch.allclose(out.detach(), want.detach(), rtol=1e-4, atol=1e-5), \
        f"{label}: the output is not the convolution with the masked kernel"
    assert torch.equal(r.after(x), x.detach()) and torch.equal(r.after(weight), weight.detach()), \
        f"{label}: masked_conv2d changed its input or its weights"
    if bias is not None:
        assert torch.equal(r.after(bias), bias.detach()), f"{label}: masked_conv2d changed the bias"
    g_x, g_w, *g_b = r.grad(0)
    ref_grads = torch.autograd.grad(want, leaves + ([b] if b is not None else []), upstream)
    assert g_w is not None and torch.allclose(g_w * (1 - mask), torch.zeros_like(g_w)), \
        f"{label}: the weights' gradient is not zero on the masked taps, so training would turn them back on"
    assert torch.allclose(g_w, ref_grads[1], rtol=1e-4, atol=1e-5), f"{label}: the weights' gradient is wrong"
    assert g_x is not None and torch.allclose(g_x, ref_grads[0], rtol=1e-4, atol=1e-5), f"{label}: the input's gradient is wrong"
    if bias is not None:
        assert g_b[0] is not None and torch.allclose(g_b[0], ref_grads[2], rtol=1e-4, atol=1e-5), f"{label}: the bias's gradient is wrong"
    for t in (x, weight) + (() if bias is None else (bias,)):
        assert r.grad_after_call(t) is None, f"{label}: masked_conv2d left .grad on its inputs"


cases = [((2, 3, 6, 7), 4, reference_mask(3, "A"), True, 'a 3 x 3 type "A" mask'),
         ((1, 2, 5, 4), 3, reference_mask(5, "B"), True, 'a 5 x 5 type "B" mask, a batch of one'),
         ((2, 1, 4, 9), 2, reference_mask(3, "B"), False, 'a 3 x 3 type "B" mask, no bias'),
         ((1, 2, 7, 5), 2, (torch.rand(5, 5, generator=g) < 0.5).float(), True, "a 5 x 5 mask of random zeros and ones")]
for (B, C_in, H, W), C_out, mask, with_bias, label in cases:
    k = mask.shape[0]
    x = torch.randn(B, C_in, H, W, generator=g, requires_grad=True)
    weight = torch.randn(C_out, C_in, k, k, generator=g, requires_grad=True)
    bias = torch.randn(C_out, generator=g, requires_grad=True) if with_bias else None
    upstream = torch.randn(B, C_out, H, W, generator=g)
    wrt = [x, weight] + ([bias] if with_bias else [])
    check(Call("masked_conv2d", x, weight, bias, mask, grads=[Grad([(Out(), upstream)], wrt=wrt)]), verdict,
          x=x, weight=weight, bias=bias, mask=mask, upstream=upstream, label=label)

# %% [markdown]
# ## Question 3 (3 points): what a stack of masked convolutions sees
#
# A PixelCNN stacks masked convolutions: type A first, type B after. Which input positions
# does its output at one position depend on? Measure it: the output at `position` depends on
# an input position exactly when its gradient there is not zero.
#
# Write `receptive_field(masks, size, position)`:
#
# * `masks` is a list of `(k, k)` masks, one per layer (`k` may differ between layers);
# * `size` is `(H, W)` and `position` is `(row, col)` of one output position;
# * build the stack on a `(1, 1, H, W)` input with `F.conv2d`, zero padding `k // 2`, and
#   each mask itself as the layer's one-channel kernel (`mask.reshape(1, 1, k, k)`): all taps
#   are 0 or 1, so no two paths can cancel and a zero gradient means "no path";
# * return an `(H, W)` bool tensor, `True` where the output at `position` depends on the input.

# %%
def receptive_field(masks, size, position):
    """(H, W) bool: the inputs that the output at `position` of a stack of masked convolutions depends on."""
    ### BEGIN SOLUTION
    H, W = size
    x = torch.ones(1, 1, H, W, requires_grad=True)
    h = x
    for mask in masks:
        k = mask.shape[-1]
        h = F.conv2d(h, mask.reshape(1, 1, k, k), padding=k // 2)
    row, col = position
    h[0, 0, row, col].backward()               # one output position: d out[row, col] / d x
    return x.grad[0, 0] != 0
    ### END SOLUTION


# %% tags=["check"]
with skip_if_unanswered():
    mask_A = torch.tensor([[1., 1., 1.], [1., 0., 0.], [0., 0., 0.]])
    mask_B = torch.tensor([[1., 1., 1.], [1., 1., 0.], [0., 0., 0.]])
    field = receptive_field([mask_A], (4, 5), (2, 3))
    expected = torch.zeros(4, 5, dtype=torch.bool)
    expected[1, 2:5] = expected[2, 2] = True       # one type A layer: the mask itself, placed on (2, 3)
    assert tuple(field.shape) == (4, 5), f"one layer on a 4 x 5 grid: expected shape (4, 5), got {tuple(field.shape)}"
    assert field.dtype == torch.bool, f"expected a bool tensor, got {field.dtype}"
    expect_close("receptive_field([mask_A], (4, 5), (2, 3))", field, expected)
    field = receptive_field([mask_A, mask_B, mask_B], (6, 7), (4, 2))
    expected = torch.tensor([[0, 0, 0, 0, 0, 0, 0],
                             [1, 1, 1, 1, 1, 1, 0],
                             [1, 1, 1, 1, 1, 0, 0],
                             [1, 1, 1, 1, 0, 0, 0],
                             [1, 1, 0, 0, 0, 0, 0],
                             [0, 0, 0, 0, 0, 0, 0]], dtype=torch.bool)
    expect_close("receptive_field([mask_A, mask_B, mask_B], (6, 7), (4, 2))", field, expected)
    print("receptive_field: the checks passed")

# %% tags=["hidden-tests"] question="receptive_field" points=3
from dlstudio_lite.pixelcnn import causal_mask as reference_mask

g = rng(3)


def reference_field(masks, size, position):
    """The grader's own measurement, in float64: the gradient of one output position."""
    x = torch.zeros(1, 1, *size, dtype=torch.float64, requires_grad=True)
    h = x
    for mask in masks:
        k = mask.shape[-1]
        h = F.conv2d(h, mask.double().reshape(1, 1, k, k), padding=k // 2)
    (grad,) = torch.autograd.grad(h[0, 0, position[0], position[1]], x)
    return grad[0, 0] != 0


def verdict(r, masks, size, position, label):
    field = r.tensor()
    H, W = size
    where = f"{label}, output position {position} of a {H} x {W} grid"
    assert tuple(field.shape) == (H, W), f"{where}: expected shape {(H, W)}, got {tuple(field.shape)}"
    assert field.dtype == torch.bool, f"{where}: expected a bool tensor, got {field.dtype}"
    want = reference_field(masks, size, position)
    rows, cols = torch.arange(H).reshape(H, 1), torch.arange(W).reshape(1, W)
    before = (rows < position[0]) | ((rows == position[0]) & (cols < position[1]))
    extra, missing = field & ~want, want & ~field
    assert not (extra & ~before).any(), \
        f"{where}: the field holds positions at or after {position}, which the stack cannot see"
    assert not extra.any(), \
        f"{where}: the field holds earlier positions that the stack cannot see: the blind spot, or beyond its reach"
    assert not missing.any(), \
        f"{where}: the field misses positions the output depends on"
    for i, m in enumerate(masks):
        assert torch.equal(r.after(m), m), f"{where}: receptive_field changed mask {i}"


A3, B3, A5, B5 = reference_mask(3, "A"), reference_mask(3, "B"), reference_mask(5, "A"), reference_mask(5, "B")
cases = [([A3, B3, B3, B3], (8, 9), (6, 4), "type A then three type B, 3 x 3"),
         ([A5, B3], (7, 5), (5, 2), "a 5 x 5 type A then a 3 x 3 type B"),
         ([A3, B3, B3, B3, B3, B3], (10, 10), (9, 9), "six 3 x 3 layers"),
         ([A3, B5, B3], (6, 11), (3, 10), "3 x 3 type A, 5 x 5 and 3 x 3 type B, at the right edge"),
         ([A3], (4, 6), (0, 3), "one 3 x 3 type A layer, in the top row"),
         ([(torch.rand(3, 3, generator=g) < 0.6).float(), (torch.rand(5, 5, generator=g) < 0.6).float()],
          (6, 8), (2, 5), "two masks of random zeros and ones")]
for masks, size, position, label in cases:
    check(Call("receptive_field", masks, size, position), verdict, masks=masks, size=size, position=position, label=label)

# %% [markdown]
# ## Question 4 (2 points): the blind spot
#
# Compare the field of a masked stack with the field of the same stack **without** masks
# (full `k x k` kernels: a square around the position). The masked stack is meant to see
# every earlier position that the unmasked one reaches. The **blind spot** is the set of
# earlier positions that it misses nevertheless.
#
# Write `blind_spot(field, full_field, position)`: given the masked stack's field and the
# unmasked stack's field (both `(H, W)` bool) of the output at `position = (row, col)`,
# return the `(H, W)` bool tensor of the positions that come before `position` in raster
# order (a row above, or the same row and a column to the left), lie in `full_field`, and
# are not in `field`. `torch.arange` and broadcasting build "comes before" in two lines.

# %%
def blind_spot(field, full_field, position):
    """(H, W) bool: earlier positions (raster order) in full_field that field misses."""
    ### BEGIN SOLUTION
    H, W = field.shape
    row, col = position
    rows, cols = torch.arange(H).reshape(H, 1), torch.arange(W).reshape(1, W)
    before = (rows < row) | ((rows == row) & (cols < col))       # earlier in raster order
    return before & full_field & ~field
    ### END SOLUTION


# %% tags=["check"]
with skip_if_unanswered():
    field = torch.tensor([[0, 0, 0, 0, 0, 0, 0],              # the field of question 3's check
                          [1, 1, 1, 1, 1, 1, 0],
                          [1, 1, 1, 1, 1, 0, 0],
                          [1, 1, 1, 1, 0, 0, 0],
                          [1, 1, 0, 0, 0, 0, 0],
                          [0, 0, 0, 0, 0, 0, 0]], dtype=torch.bool)
    full_field = torch.zeros(6, 7, dtype=torch.bool)
    full_field[1:, :6] = True                                  # three unmasked 3 x 3 layers: 3 steps each way from (4, 2)
    spot = blind_spot(field, full_field, (4, 2))
    assert tuple(spot.shape) == (6, 7) and spot.dtype == torch.bool, \
        f"expected a (6, 7) bool tensor, got {tuple(spot.shape)} {spot.dtype}"
    expected = torch.zeros(6, 7, dtype=torch.bool)
    expected[2, 5] = expected[3, 4] = expected[3, 5] = True   # the wedge above and to the right
    expect_close("blind_spot(field, full_field, (4, 2))", spot, expected)
    field = torch.tensor([[1, 1, 1, 1], [1, 0, 1, 0], [0, 0, 0, 0]], dtype=torch.bool)   # made up: (1, 1) and (1, 3) unseen
    # Of the two unseen positions in row 1 only (1, 1) comes before (1, 2); (1, 3) comes after it.
    expected = torch.tensor([[0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0]], dtype=torch.bool)
    expect_close("blind_spot(made-up field, all True, (1, 2))", blind_spot(field, torch.ones(3, 4, dtype=torch.bool), (1, 2)), expected)
    print("blind_spot: the checks passed")

# %% [markdown]
# ## The blind spot does not go away with depth
#
# Stack more layers and the field grows, freely up and to the left, but to the right only
# as far as it goes up: with 3 x 3 kernels, a path reaches one column further right only by
# going one row up, because the centre row of a mask holds nothing right of the centre. The
# wedge to the upper right of the position stays unseen however deep the stack, and it grows
# with the field (`o` below; the titles count the positions). The gated PixelCNN (van den
# Oord et al., 2016) removes it with two stacks: a vertical one that sees all the rows above
# and a horizontal one for the current row.

# %% tags=["uses-answers"]
with skip_if_unanswered():
    size, position = (11, 13), (8, 6)
    pictures, titles = [], []
    for depth in (2, 4, 8):
        masks = [causal_mask(3, "A")] + [causal_mask(3, "B")] * (depth - 1)
        field = receptive_field(masks, size, position)
        full_field = receptive_field([torch.ones(3, 3)] * depth, size, position)
        spot = blind_spot(field, full_field, position)
        picture = [["#" if field[i, j] else "o" if spot[i, j] else "." for j in range(size[1])] for i in range(size[0])]
        picture[position[0]][position[1]] = "X"
        pictures.append([" ".join(row) for row in picture])             # a space between columns: square cells
        titles.append(f"{depth} layers: {int(field.sum())} seen, {int(spot.sum())} blind")
    print("X: the output position   #: seen   o: blind spot   .: not seen\n")
    print("   ".join(titles))
    for rows in zip(*pictures):
        print("   ".join(f"{r:{len(t)}s}" for r, t in zip(rows, titles)))

# %% tags=["hidden-tests"] question="blind_spot" points=2
from dlstudio_lite.pixelcnn import causal_mask as reference_mask

g = rng(5)


def field_of(masks, size, position):
    x = torch.zeros(1, 1, *size, dtype=torch.float64, requires_grad=True)
    h = x
    for mask in masks:
        k = mask.shape[-1]
        h = F.conv2d(h, mask.double().reshape(1, 1, k, k), padding=k // 2)
    (grad,) = torch.autograd.grad(h[0, 0, position[0], position[1]], x)
    return grad[0, 0] != 0


def verdict(r, field, full_field, position, label):
    H, W = field.shape
    spot = r.tensor()
    where = f"{label}, position {position} of a {H} x {W} grid"
    assert tuple(spot.shape) == (H, W), f"{where}: expected shape {(H, W)}, got {tuple(spot.shape)}"
    assert spot.dtype == torch.bool, f"{where}: expected a bool tensor, got {spot.dtype}"
    rows, cols = torch.arange(H).reshape(H, 1), torch.arange(W).reshape(1, W)
    before = (rows < position[0]) | ((rows == position[0]) & (cols < position[1]))
    want = before & full_field & ~field
    assert not (spot & ~before).any(), f"{where}: positions at or after {position} in raster order are marked blind"
    assert not (spot & field).any(), f"{where}: positions inside the receptive field are marked blind"
    assert not (spot & ~full_field).any(), f"{where}: positions beyond the reach of the unmasked stack are marked blind"
    assert torch.equal(spot, want), f"{where}: earlier positions within reach that the field misses are not all marked blind"
    assert torch.equal(r.after(field), field) and torch.equal(r.after(full_field), full_field), \
        f"{where}: blind_spot changed its inputs"


A3, B3 = reference_mask(3, "A"), reference_mask(3, "B")
cases = []
for depth, size, position in ((3, (9, 10), (7, 3)), (5, (12, 12), (10, 6)), (2, (5, 7), (0, 4))):
    masks = [A3] + [B3] * (depth - 1)
    cases.append((field_of(masks, size, position), field_of([torch.ones(3, 3)] * depth, size, position), position,
                  f"{depth} masked 3 x 3 layers"))
for size, position in (((6, 8), (3, 5)), ((7, 4), (6, 0)), ((4, 9), (2, 8))):
    cases.append((torch.rand(size, generator=g) < 0.5, torch.rand(size, generator=g) < 0.8, position, "made-up fields"))
for field, full_field, position, label in cases:
    check(Call("blind_spot", field, full_field, position), verdict, field=field, full_field=full_field,
          position=position, label=label)

# %% [markdown]
# ## Summary
#
# * A masked convolution is an ordinary convolution whose kernel is multiplied by a 0/1
#   mask on every call; the masked taps then get no gradient and stay off.
# * Type A hides the centre (the first layer must not see the value it predicts); type B
#   keeps it (later layers read features of earlier positions only).
# * Gradients tell exactly which inputs an output depends on: one output position, one
#   backward pass.
# * Plain stacked masked convolutions never see a wedge of earlier positions above and to
#   the right, however deep the stack: the blind spot that the gated PixelCNN removes.
