# ---
# jupyter:
#   dlstudio_lite:
#     exercise: ex10_fsq
#     title: 'Exercise 10: finite scalar quantization'
#   jupytext:
#     formats: py:percent
#     notebook_metadata_filter: dlstudio_lite
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Exercise 10: finite scalar quantization
#
# This exercise goes with appendix lecture 10 (the quantizers that replaced the codebook
# lookup).
#
# **Finite scalar quantization** (FSQ; Mentzer et al., 2023) throws the codebook away. The
# encoder gives a few numbers per latent position, `d` of them (3 to 6 in the paper's
# recommended settings). Each number is squashed into a bounded interval and rounded to one
# of `L_i` values, the *levels* of channel `i`. The codes are all the combinations: a grid of
# `L_0 * L_1 * ... * L_{d-1}` points, the **implicit codebook**. With `levels = [8, 5, 5, 5]`
# that is 1000 codes from four numbers. Nothing is learned in the quantizer, so there is no
# codebook loss, no commitment loss, and no dead code to restart: every grid point is
# reachable, and the paper reports that nearly all of them are used.
#
# You will write the four pieces of an FSQ layer:
#
# 1. the **bound**: each channel squashed so that rounding gives exactly `L_i` integers;
# 2. the **rounding** to that grid, scaled back into `[-1, 1]`, with a **straight-through
#    gradient** (the rounding itself has a zero gradient);
# 3. the **index** of a code in the implicit codebook, so that a prior (lecture 6) can model
#    codes as one token each, and the codebook's size;
# 4. the way back, from an index to its code.
#
# The course package has its own `dlstudio_lite.quantize.FSQ`, and the hidden tests compare
# your answers with it (values and gradients); write these yourself, in plain PyTorch. Write
# your code where it says `# YOUR CODE HERE` (delete the `raise NotImplementedError`), then
# run the check cell that follows each question. The grader runs more tests than the checks
# you see.

# %%
import contextlib
import math

import torch

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
# ## Question 1 (3 points): the bound
#
# Write `fsq_bound(z, levels, eps=1e-3)`: `z` is a float tensor `(..., d)` (the last
# dimension holds the `d` channels), `levels` a list of `d` integers, each at least 3.
# Return a tensor of the same shape whose channel `i`, once rounded to the nearest integer,
# takes **exactly `L = levels[i]` integer values**, whatever `z` is. Follow the paper's
# recipe (its Appendix A.1, as vector-quantize-pytorch and the course package write it),
# channel by channel:
#
# * `tanh` squashes any number into `(-1, 1)`; scale it by the half-width
#   `half_l = (L - 1) * (1 + eps) / 2`. For odd `L`, say 5, the values lie in
#   `(-2.002, 2.002)` and round to the 5 integers `-2 .. 2`. (`eps` is a small margin; the
#   course package and vector-quantize-pytorch scale by `1 + eps` as here.)
# * For even `L`, say 8, no symmetric set of 8 integers exists: the grid is `-4 .. 3`. Move
#   the scaled value down by an `offset` of one half (and by 0 for odd `L`), so that it lies in
#   about `(-4.004, 3.004)`.
# * The offset alone would send `z = 0` to `-1/2`, right on a rounding boundary. Add a
#   `shift` to `z` before the `tanh`, chosen so that `fsq_bound(0) = 0` in every channel:
#
# $$\mathrm{bound}(z) = \tanh(z + \mathrm{shift})\cdot \mathrm{half\_l} - \mathrm{offset}.$$
#
# Work out the shift from that condition (it is 0 for odd `L`). Everything stays a torch
# computation, so that the gradient reaches `z`. `torch.tensor(levels)` turns the list into a
# `(d,)` tensor that broadcasts along the last dimension.

# %%
def fsq_bound(z, levels, eps=1e-3):
    """(..., d) -> (..., d): channel i squashed so that rounding gives exactly levels[i] integers."""
    ### BEGIN SOLUTION
    L = torch.tensor(levels, dtype=z.dtype)
    half_l = (L - 1) * (1 + eps) / 2                     # a little over (L - 1) / 2
    offset = torch.where(L % 2 == 0, 0.5, 0.0)           # even L: the grid -L/2 .. L/2 - 1
    shift = torch.atanh(offset / half_l)                 # tanh(shift) * half_l = offset: z = 0 stays at 0
    return torch.tanh(z + shift) * half_l - offset
    ### END SOLUTION


# %% tags=["check"]
with skip_if_unanswered():
    z = torch.linspace(-8, 8, 801).reshape(-1, 1).repeat(1, 2)          # (801, 2): every z from -8 to 8, twice
    bounded = fsq_bound(z, [5, 8])
    assert tuple(bounded.shape) == (801, 2), f"expected shape (801, 2), got {tuple(bounded.shape)}"
    assert bounded.dtype == z.dtype, f"expected the dtype of z, {z.dtype}, got {bounded.dtype}"
    for channel, L, grid in ((0, 5, list(range(-2, 3))), (1, 8, list(range(-4, 4)))):
        got = sorted(set(bounded[:, channel].detach().round().int().tolist()))
        assert got == grid, f"channel {channel} (L = {L}): rounding fsq_bound(z) gives the integers {got}, expected {grid}"
    expect_close("fsq_bound(0, [5, 8]) (z = 0 must stay at 0)", fsq_bound(torch.zeros(1, 2), [5, 8]), torch.zeros(1, 2))
    z = torch.tensor([[-1.0, -1.0], [0.5, 0.5], [2.0, 2.0]])
    expect_close("fsq_bound(z, [5, 8])[:, 0] for z = -1, 0.5, 2 (odd L = 5: tanh(z) * 2.002)",
                 fsq_bound(z, [5, 8])[:, 0], torch.tanh(z[:, 0]) * 2.002)
    rising = fsq_bound(torch.linspace(-3, 3, 61).reshape(-1, 1).repeat(1, 2), [5, 8])
    assert (rising.diff(dim=0) > 0).all(), "fsq_bound should rise with z in every channel (a tanh, not a clamp)"
    print("fsq_bound: the checks passed")

# %% tags=["hidden-tests"] question="fsq_bound" points=3
from dlstudio_lite.quantize import FSQ

g = rng(1)


def library(levels):
    return FSQ(math.prod(levels), len(levels), levels=levels)


def verdict(r, z, levels, upstream, label):
    where = f"fsq_bound with {label}"
    out = r.tensor()
    assert tuple(out.shape) == tuple(z.shape), f"{where}: expected shape {tuple(z.shape)}, got {tuple(out.shape)}"
    assert out.dtype == z.dtype, f"{where}: expected dtype {z.dtype}, got {out.dtype}"
    L = torch.tensor(levels)
    rounded = out.detach().round()
    assert ((rounded >= -(L // 2)) & (rounded <= L - L // 2 - 1)).all(), \
        f"{where}: rounded, some channels leave their grid of L integers (-(L // 2) .. L - L // 2 - 1)"
    zero = (z.detach() == 0).all(-1)
    assert torch.allclose(out.detach()[zero], torch.zeros_like(out.detach()[zero]), atol=1e-5), \
        f"{where}: fsq_bound(0) is not 0 in every channel (the shift must cancel the offset of even levels)"
    leaf = z.detach().clone().requires_grad_()
    want = library(levels).bound(leaf)
    assert torch.allclose(out.detach(), want.detach(), rtol=1e-5, atol=1e-5), \
        f"{where}: the values are not tanh(z + shift) * half_l - offset, channel by channel"
    (g_z,) = r.grad(0)
    (want_g,) = torch.autograd.grad(want, leaf, upstream)
    assert g_z is not None and torch.allclose(g_z, want_g, rtol=1e-4, atol=1e-6), \
        f"{where}: the gradient with respect to z is not the bound's"
    assert torch.equal(r.after(z), z.detach()), f"{where}: fsq_bound changed its input"
    assert r.grad_after_call(z) is None, f"{where}: fsq_bound left .grad on its input"


def inputs(levels, shape, dtype=torch.float32):
    """z of `shape` (..., d): rows far out on both sides and a row of zeros, then random rows."""
    d = len(levels)
    rows = math.prod(shape[:-1])
    z = torch.cat([torch.full((1, d), 8.0), torch.full((1, d), -8.0), torch.zeros(1, d),
                   3 * torch.randn(rows - 3, d, generator=g)])
    return z.to(dtype).reshape(shape).requires_grad_()


drawn = [int(v) for v in torch.randint(3, 10, (int(torch.randint(2, 6, (1,), generator=g)),), generator=g)]
cases = [([5, 8], (64, 2), torch.float32, "levels [5, 8], a batch of vectors"),
         ([8, 5, 5, 5], (2, 3, 4, 4), torch.float32, "levels [8, 5, 5, 5], a (2, 3, 4, 4) grid of vectors"),
         ([6, 3, 7], (40, 3), torch.float64, "levels [6, 3, 7] in float64"),
         (drawn, (48, len(drawn)), torch.float32, "levels drawn at random")]
for levels, shape, dtype, label in cases:
    z = inputs(levels, shape, dtype)
    upstream = torch.randn(shape, generator=g, dtype=dtype)
    check(Call("fsq_bound", z, levels, grads=[Grad([(Out(), upstream)], wrt=[z])]), verdict,
          z=z, levels=levels, upstream=upstream, label=label)

# %% [markdown]
# ## Question 2 (3 points): round to the grid, with a straight-through gradient
#
# Write `fsq_round(bounded, levels)`: `bounded (..., d)` is what `fsq_bound` returns. Round
# every value to the nearest integer and divide channel `i` by `L // 2` (2 for `L = 5`, 4
# for `L = 8`), so that the codes lie in `[-1, 1]`: `-1, -0.5, 0, 0.5, 1` for `L = 5` and
# `-1, -0.75, ..., 0.75` for `L = 8`.
#
# `torch.round` has a zero gradient almost everywhere: on its own it would stop all
# training of the encoder. FSQ passes the gradient **straight through** the rounding, as if
# it were the identity, the trick of lecture 5: the value is the rounded one, the gradient
# with respect to `bounded` that of `bounded / (L // 2)`. The division by `L // 2` stays in
# the graph: only the rounding is skipped.

# %%
def fsq_round(bounded, levels):
    """(..., d) bounded values -> (..., d) codes in [-1, 1]: rounded, with a straight-through gradient."""
    ### BEGIN SOLUTION
    half_width = torch.tensor(levels) // 2                        # 2 for L = 5, 4 for L = 8
    rounded = bounded + (bounded.round() - bounded).detach()      # value: rounded; gradient: identity
    return rounded / half_width
    ### END SOLUTION


# %% tags=["check"]
with skip_if_unanswered():
    bounded = torch.tensor([[-1.9, -3.9], [0.4, 2.6], [1.6, -0.4], [-0.7, 1.2]], requires_grad=True)
    codes = fsq_round(bounded, [5, 8])
    assert codes.dtype == bounded.dtype, f"expected the dtype of bounded, {bounded.dtype}, got {codes.dtype}"
    expect_close("fsq_round(bounded, [5, 8])", codes,
                 [[-1.0, -1.0], [0.0, 0.75], [1.0, 0.0], [-0.5, 0.25]])  # rounded: (-2, -4), (0, 3), (2, 0), (-1, 1)
    upstream = torch.tensor([[1.0, 1.0], [2.0, 2.0], [-1.0, -1.0], [3.0, 3.0]])
    (codes * upstream).sum().backward()
    assert bounded.grad is not None, "no gradient reaches bounded: keep the rounding inside the graph (straight-through)"
    assert bounded.grad.abs().sum() > 0, \
        "the gradient that reaches bounded is zero, the derivative of torch.round: pass it straight through instead"
    expect_close("bounded.grad (the upstream gradient divided by L // 2: by 2 in channel 0, by 4 in channel 1)",
                 bounded.grad, upstream / torch.tensor([2.0, 4.0]))
    print("fsq_round: the checks passed")

# %% tags=["hidden-tests"] question="fsq_round" points=3
from dlstudio_lite.quantize import FSQ

g = rng(2)


def library(levels):
    return FSQ(math.prod(levels), len(levels), levels=levels)


def verdict(r, z, bounded, levels, upstream, label):
    where = f"fsq_round with {label}"
    out = r.tensor()
    assert tuple(out.shape) == tuple(bounded.shape), f"{where}: expected shape {tuple(bounded.shape)}, got {tuple(out.shape)}"
    assert out.dtype == bounded.dtype, f"{where}: expected dtype {bounded.dtype}, got {out.dtype}"
    codes, half = out.detach(), torch.tensor(levels) // 2
    assert (codes.abs() <= 1 + 1e-6).all(), f"{where}: some codes lie outside [-1, 1]"
    assert torch.allclose(codes * half, (codes * half).round(), atol=1e-4), \
        f"{where}: some codes are not an integer divided by L // 2 of their channel"
    fsq, d = library(levels), len(levels)
    leaf = z.detach().clone().reshape(-1, d).requires_grad_()
    want, _, _ = fsq.quantize_rows(leaf)
    assert torch.allclose(codes.reshape(-1, d), want.detach(), atol=1e-6), \
        f"{where}: the codes are not round(bounded) / (L // 2), channel by channel"
    (g_b,) = r.grad(0)
    assert g_b is not None, f"{where}: no gradient reaches bounded"
    assert g_b.abs().sum() > 0, \
        f"{where}: the gradient that reaches bounded is zero, torch.round's own: pass it straight through the rounding"
    # The library's gradient with respect to z, against yours carried back through its bound.
    up = upstream.reshape(-1, d)
    (want_g,) = torch.autograd.grad(want, leaf, up)
    (got_g,) = torch.autograd.grad(fsq.bound(leaf), leaf, g_b.reshape(-1, d))
    assert torch.allclose(got_g, want_g, rtol=1e-4, atol=1e-6), \
        f"{where}: the gradient with respect to bounded is not straight through the rounding (that of bounded / (L // 2))"
    assert torch.equal(r.after(bounded), bounded.detach()), f"{where}: fsq_round changed its input"
    assert r.grad_after_call(bounded) is None, f"{where}: fsq_round left .grad on its input"


drawn = [int(v) for v in torch.randint(3, 10, (int(torch.randint(2, 6, (1,), generator=g)),), generator=g)]
cases = [([5, 8], (64, 2), "levels [5, 8], a batch of vectors"),
         ([8, 5, 5, 5], (2, 3, 4, 4), "levels [8, 5, 5, 5], a (2, 3, 4, 4) grid of vectors"),
         (drawn, (48, len(drawn)), "levels drawn at random")]
for levels, shape, label in cases:
    d = len(levels)
    z = torch.cat([torch.full((1, d), 8.0), torch.full((1, d), -8.0), 2 * torch.randn(math.prod(shape[:-1]) - 2, d, generator=g)])
    z = z.reshape(shape)
    bounded = library(levels).bound(z).detach().requires_grad_()
    upstream = torch.randn(shape, generator=g)
    check(Call("fsq_round", bounded, levels, grads=[Grad([(Out(), upstream)], wrt=[bounded])]), verdict,
          z=z, bounded=bounded, levels=levels, upstream=upstream, label=label)

# %% [markdown]
# ## Question 3 (3 points): the implicit codebook and the index of a code
#
# A prior over code grids (lecture 6) predicts one token per position out of `K` classes,
# so each code needs an index in `0 .. K - 1`.
#
# * Write `codebook_size(levels)`: `K`, the number of points of the grid, as an `int`.
# * Write `code_to_index(codes, levels)`: `codes (..., d)` as `fsq_round` returns them;
#   return a long tensor `(...)` of indices. First turn channel `i` back into its **digit**
#   `0 .. L_i - 1`: multiply by `L_i // 2` (the integer grid), add `L_i // 2`, and round
#   before converting to `long` (floating point may give 2.9999999). The index is then the
#   number whose digits these are in a **mixed radix**, the first channel the least
#   significant, as in the course package and in vector-quantize-pytorch:
#
# $$\mathrm{index} = \mathrm{digit}_0 + L_0\,\bigl(\mathrm{digit}_1 + L_1\,(\mathrm{digit}_2 + \dots)\bigr)
#   = \sum_i \mathrm{digit}_i \prod_{j < i} L_j .$$
#
# For `levels = [5, 8]`: the code `(-1, -1)` has digits `(0, 0)` and index 0, `(1, -1)` has
# digits `(4, 0)` and index 4, and `(-1, -0.75)` has digits `(0, 1)` and index 5.
# `torch.cumprod` gives the place values `1, L_0, L_0 L_1, ...`.

# %%
def codebook_size(levels):
    """The number of codes in the implicit codebook, an int."""
    ### BEGIN SOLUTION
    return math.prod(levels)
    ### END SOLUTION


def code_to_index(codes, levels):
    """(..., d) codes in [-1, 1] -> (...) long indices in [0, codebook_size(levels))."""
    ### BEGIN SOLUTION
    L = torch.tensor(levels)
    digits = (codes * (L // 2)).round().long() + L // 2                                  # channel i: 0 .. L_i - 1
    place = torch.cumprod(torch.cat([torch.ones(1, dtype=torch.long), L[:-1]]), dim=0)   # 1, L_0, L_0 L_1, ...
    return (digits * place).sum(-1)
    ### END SOLUTION


# %% tags=["check"]
with skip_if_unanswered():
    assert codebook_size([5, 8]) == 40, f"codebook_size([5, 8]): expected 40, got {codebook_size([5, 8])}"
    assert codebook_size([8, 5, 5, 5]) == 1000, f"codebook_size([8, 5, 5, 5]): expected 1000, got {codebook_size([8, 5, 5, 5])}"
    codes = torch.tensor([[[-1.0, -1.0], [1.0, -1.0]], [[-1.0, -0.75], [0.5, 0.75]]])       # (2, 2, 2)
    index = code_to_index(codes, [5, 8])
    assert tuple(index.shape) == (2, 2), f"expected shape (2, 2), got {tuple(index.shape)}"
    assert index.dtype == torch.long, f"expected dtype torch.long (a prior's token), got {index.dtype}"
    # (0.5, 0.75) has digits (3, 7): 3 + 5 * 7 = 38.
    expect_close("code_to_index of (-1, -1), (1, -1), (-1, -0.75), (0.5, 0.75) with levels [5, 8]", index, [[0, 4], [5, 38]])
    print("codebook_size, code_to_index: the checks passed")

# %% tags=["hidden-tests"] question="code_to_index" points=3
from dlstudio_lite.quantize import FSQ

g = rng(3)


def library(levels):
    return FSQ(math.prod(levels), len(levels), levels=levels)


def size_verdict(r, levels, label):
    got = r.value
    if torch.is_tensor(got):
        assert got.dim() == 0 and not got.is_floating_point(), f"codebook_size of {label}: expected an int"
        got = int(got)
    assert isinstance(got, int), f"codebook_size of {label}: expected an int, got {type(got).__name__}"
    assert got == math.prod(levels), f"codebook_size of {label}: the value is not the number of points of the grid"


def verdict(r, codes, levels, want, label):
    where = f"code_to_index with {label}"
    index = r.tensor()
    assert tuple(index.shape) == tuple(codes.shape[:-1]), \
        f"{where}: expected shape {tuple(codes.shape[:-1])}, got {tuple(index.shape)}"
    assert index.dtype == torch.long, f"{where}: expected dtype torch.long, got {index.dtype}"
    assert ((index >= 0) & (index < math.prod(levels))).all(), \
        f"{where}: some indices lie outside 0 .. codebook_size(levels) - 1"
    assert torch.equal(index, want), \
        f"{where}: the indices are not sum_i digit_i * prod_(j < i) L_j (the first channel the least significant)"
    assert torch.equal(r.after(codes), codes), f"{where}: code_to_index changed its input"


for levels, label in (([5, 8], "levels [5, 8]"), ([8, 5, 5, 5], "levels [8, 5, 5, 5]"),
                      ([8, 8, 8, 6, 5], "levels [8, 8, 8, 6, 5]"), ([3, 4], "levels [3, 4]")):
    check(Call("codebook_size", levels), size_verdict, levels=levels, label=label)
drawn = [int(v) for v in torch.randint(3, 10, (int(torch.randint(2, 5, (1,), generator=g)),), generator=g)]
check(Call("codebook_size", drawn), size_verdict, levels=drawn, label="levels drawn at random")

# The codes come from the library's own index -> code map: their indices are the ones drawn.
cases = [(torch.arange(40), [5, 8], "the 40 codes of levels [5, 8], in index order")]
for levels, shape, label in (([8, 5, 5, 5], (2, 3, 4), "levels [8, 5, 5, 5], a (2, 3, 4) grid of codes"),
                             ([6, 3, 7], (30,), "levels [6, 3, 7], codes in a random order"),
                             (drawn, (50,), "levels drawn at random")):
    cases.append((torch.randint(0, math.prod(levels), shape, generator=g), levels, label))
for want, levels, label in cases:
    codes = library(levels).indices_to_codes(want.reshape(-1)).reshape(*want.shape, len(levels))
    check(Call("code_to_index", codes, levels), verdict, codes=codes, levels=levels, want=want, label=label)

# %% [markdown]
# ## Question 4 (2 points): from an index back to its code
#
# A prior samples indices; the decoder needs codes. Write `index_to_code(indices, levels)`:
# `indices` a long tensor `(...)` with values in `0 .. K - 1`; return the float codes
# `(..., d)`, the inverse of `code_to_index`. Digit `i` is the index divided (with `//`) by
# its place value `prod(levels[:i])`, modulo `L_i`; the code is `(digit - L_i // 2) / (L_i // 2)`.

# %%
def index_to_code(indices, levels):
    """(...) long indices -> (..., d) float codes in [-1, 1]: the inverse of code_to_index."""
    ### BEGIN SOLUTION
    L = torch.tensor(levels)
    place = torch.tensor([math.prod(levels[:i]) for i in range(len(levels))])    # 1, L_0, L_0 L_1, ...
    digits = (indices[..., None] // place) % L                                  # (..., d), channel i: 0 .. L_i - 1
    return (digits - L // 2).float() / (L // 2)
    ### END SOLUTION


# %% tags=["check"]
with skip_if_unanswered():
    codes = index_to_code(torch.tensor([[0, 4], [5, 38]]), [5, 8])
    assert tuple(codes.shape) == (2, 2, 2), f"expected shape (2, 2, 2), got {tuple(codes.shape)}"
    assert codes.is_floating_point(), f"expected a float tensor, got {codes.dtype}"
    expect_close("index_to_code([[0, 4], [5, 38]], [5, 8])", codes,
                 [[[-1.0, -1.0], [1.0, -1.0]], [[-1.0, -0.75], [0.5, 0.75]]])
    every = index_to_code(torch.arange(40), [5, 8])
    assert every.unique(dim=0).shape[0] == 40, f"the 40 indices give {every.unique(dim=0).shape[0]} different codes, expected 40"
    print("index_to_code: the checks passed")

# %% tags=["hidden-tests"] question="index_to_code" points=2
from dlstudio_lite.quantize import FSQ

g = rng(4)


def verdict(r, indices, levels, label):
    where = f"index_to_code with {label}"
    codes = r.tensor()
    d = len(levels)
    assert tuple(codes.shape) == (*indices.shape, d), f"{where}: expected shape {(*indices.shape, d)}, got {tuple(codes.shape)}"
    assert codes.is_floating_point(), f"{where}: expected a float tensor, got {codes.dtype}"
    assert (codes.abs() <= 1 + 1e-6).all(), f"{where}: some codes lie outside [-1, 1]"
    want = FSQ(math.prod(levels), d, levels=levels).indices_to_codes(indices.reshape(-1))
    assert torch.allclose(codes.reshape(-1, d).float(), want, atol=1e-6), \
        f"{where}: the codes are not (digit_i - L_i // 2) / (L_i // 2), digit_i = index // prod(levels[:i]) % L_i"
    assert torch.equal(r.after(indices), indices), f"{where}: index_to_code changed its input"


drawn = [int(v) for v in torch.randint(3, 10, (int(torch.randint(2, 5, (1,), generator=g)),), generator=g)]
cases = [(torch.arange(40), [5, 8], "the 40 indices of levels [5, 8]"),
         (torch.randint(0, 1000, (2, 3, 4), generator=g), [8, 5, 5, 5], "levels [8, 5, 5, 5], a (2, 3, 4) grid of indices"),
         (torch.randint(0, 126, (30,), generator=g), [6, 3, 7], "levels [6, 3, 7]"),
         (torch.randint(0, math.prod(drawn), (50,), generator=g), drawn, "levels drawn at random")]
for indices, levels, label in cases:
    check(Call("index_to_code", indices, levels), verdict, indices=indices, levels=levels, label=label)

# %% [markdown]
# ## The whole quantizer
#
# Put the four pieces together on random encoder outputs with `levels = [5, 8]`: bound,
# round, index, and back. The map below counts how often each of the 40 codes is used (rows:
# channel 0, columns: channel 1); the line under it says how many codes were used and
# whether the way back from the index gives every code exactly. The same layer with a
# projection in and out is
# `dlstudio_lite.quantize.FSQ`, which lecture 10 compares with the codebook quantizers;
# `dlstudio_lite.quantize.fsq_levels` picks levels for a codebook size, e.g.
# 1000 -> `[8, 5, 5, 5]`.

# %% tags=["uses-answers"]
with skip_if_unanswered():
    levels = [5, 8]
    z = 1.5 * torch.randn(4000, 2)
    codes = fsq_round(fsq_bound(z, levels), levels)
    index = code_to_index(codes, levels)
    counts = torch.bincount(index, minlength=codebook_size(levels))
    grid = index_to_code(torch.arange(codebook_size(levels)), levels)
    print("codes used, out of 4000 vectors (rows: channel 0, columns: channel 1)\n")
    print("        " + "".join(f"{float(c):>7.2f}" for c in grid[::5, 1]))
    for row in range(5):
        print(f"{float(grid[row, 0]):>7.2f} " + "".join(f"{int(counts[row + 5 * col]):>7d}" for col in range(8)))
    back = index_to_code(index, levels)
    print(f"\n{int((counts > 0).sum())} of {codebook_size(levels)} codes used; "
          f"index -> code gives back every code exactly: {torch.equal(back, codes.detach())}")

# %% [markdown]
# ## Summary
#
# * FSQ bounds each of a few channels with a shifted, scaled `tanh` (a half step lower for an
#   even number of levels) and rounds it: the codebook is the grid of all combinations,
#   `prod(levels)` codes, none of them learned.
# * Rounding passes the gradient straight through, as the codebook lookup of lecture 5 does;
#   there is no codebook or commitment loss to add.
# * A code's index is its digits read as a mixed-radix number; the way back divides by the
#   place values and takes the remainders, so a prior can work with indices as it does for a
#   learned codebook.
