# ---
# jupyter:
#   dlstudio_lite:
#     exercise: ex01_codebook
#     title: 'Exercise 1: the codebook'
#   jupytext:
#     formats: py:percent
#     notebook_metadata_filter: dlstudio_lite
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Exercise 1: the codebook
#
# A codebook is a table of `K` learned vectors `e_0 ... e_{K-1}`, each of dimension `D`.
# An encoder turns an image into a grid of `h x w` vectors, stored the PyTorch way as a
# tensor `z_e` of shape `(B, D, h, w)`. *Quantizing* replaces every one of those `B*h*w`
# vectors by its nearest codebook vector (Eq. 1 of the lecture):
#
# $$k = \operatorname{argmin}_j \lVert z_e - e_j \rVert_2 .$$
#
# You will write the lookup and the *perplexity*, the number that tells you how many
# codes are really in use. Write your code where it says `# YOUR CODE HERE` (delete the
# `raise NotImplementedError`), then run the check cell that follows each question.
# The grader runs more tests than the checks you see, so test your code on your own
# examples too.

# %%
import contextlib

import torch

_ = torch.manual_seed(0)  # it returns the generator: `_ =` keeps it from being printed


@contextlib.contextmanager
def skip_if_unanswered():
    """Around a check: a question not answered yet prints its message instead of a traceback."""
    try:
        yield
    except NotImplementedError as unanswered:
        print(unanswered)

# %% [markdown]
# ## Question 1 (3 points): nearest-code lookup
#
# Write `nearest_code(z_e, codebook)`.
#
# * `z_e` has shape `(B, D, h, w)`: channels first, as convolutions produce it.
# * `codebook` has shape `(K, D)`.
# * Return `indices` of shape `(B, h, w)` (dtype `torch.long`) with the index of the nearest
#   code for every position, and `z_q` of shape `(B, D, h, w)` holding those codes.
#
# Two traps that appear in published code: the nearest code is the one with the
# **smallest** distance, and the `D` numbers of one vector sit along dimension 1, so the
# tensor must be moved to channels-last `(B, h, w, D)` before it is flattened to `(N, D)`
# rows. `z_e.reshape(-1, D)` without that move mixes numbers from different positions.
# `torch.cdist` computes all pairwise distances at once.

# %%
def nearest_code(z_e, codebook):
    """Nearest codebook vector for every position: (B, D, h, w), (K, D) -> (B, h, w), (B, D, h, w)."""
    ### BEGIN SOLUTION
    B, D, h, w = z_e.shape
    flat = z_e.permute(0, 2, 3, 1).reshape(-1, D)          # (N, D), one row per position
    indices = torch.cdist(flat, codebook).argmin(dim=1)    # (N,)
    z_q = codebook[indices].reshape(B, h, w, D).permute(0, 3, 1, 2)
    return indices.reshape(B, h, w), z_q
    ### END SOLUTION


# %% tags=["check"]
# Check: three codes in 2-D and a 1 x 2 x 3 grid whose vectors lie close to known codes.
with skip_if_unanswered():
    codes = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    wanted = torch.tensor([[[2, 0, 1], [1, 1, 0]]])                       # (1, 2, 3)
    z = (codes[wanted] + 0.1).permute(0, 3, 1, 2)                        # (1, 2, 2, 3) = (B, D, h, w)
    idx, zq = nearest_code(z, codes)
    assert tuple(idx.shape) == (1, 2, 3), f"indices: expected shape (1, 2, 3), got {tuple(idx.shape)}"
    assert tuple(zq.shape) == (1, 2, 2, 3), f"z_q: expected shape (1, 2, 2, 3), got {tuple(zq.shape)}"
    assert idx.dtype == torch.long, f"indices: expected dtype torch.long, got {idx.dtype}"
    assert torch.equal(idx, wanted), f"indices: expected\n{wanted}\ngot\n{idx}\n(argmax instead of argmin? no BCHW -> BHWC move?)"
    assert torch.allclose(zq, codes[wanted].permute(0, 3, 1, 2)), "z_q does not hold the chosen codes at the right positions"
    print("nearest_code: the check passed")

# %% tags=["hidden-tests"] question="nearest_code" points=3
# Trusted: runs in the grader only. Each check() sends the call's inputs into the sandbox
# and judges what comes back with the verdict, here. rng(n) draws new inputs every grading run.
g = rng(11)


def verdict(r, z_e, codebook, shape, K):
    B, D, h, w = shape
    idx, z_q = r.outputs(2)
    assert tuple(idx.shape) == (B, h, w), f"indices for a {shape} input: expected shape {(B, h, w)}, got {tuple(idx.shape)}"
    assert tuple(z_q.shape) == shape, f"z_q for a {shape} input: expected shape {shape}, got {tuple(z_q.shape)}"
    assert not idx.dtype.is_floating_point, f"indices must be integers, got {idx.dtype}"
    assert torch.equal(r.after(z_e), z_e), "nearest_code changed its input z_e"
    for b in range(B):
        for i in range(h):
            for j in range(w):
                best = int(((codebook - z_e[b, :, i, j]) ** 2).sum(dim=1).argmin())
                assert int(idx[b, i, j]) == best, f"a {shape} input with {K} codes: some positions get a code that is not their nearest"
                assert torch.allclose(z_q[b, :, i, j], codebook[best]), f"a {shape} input: z_q does not hold the chosen codes at their positions"


for shape, K in (((2, 4, 3, 5), 7), ((1, 3, 4, 2), 5), ((3, 6, 1, 1), 9)):
    z_e = torch.randn(*shape, generator=g)
    codebook = torch.randn(K, shape[1], generator=g)
    check(Call("nearest_code", z_e, codebook), verdict, z_e=z_e, codebook=codebook, shape=shape, K=K)

# %% [markdown]
# ## Question 2 (2 points): perplexity
#
# If code `k` is used by a fraction `p_k` of all positions, the perplexity is
# $\exp\left(-\sum_k p_k \log p_k\right)$, the exponential of the entropy of code usage
# (with $0 \log 0 = 0$). It equals `K` when all `K` codes are used equally often and `1`
# when a single code is used everywhere. It counts codes by how much they are *used*, not
# whether: a perplexity far below `K` says that the use is uneven, not that codes are dead.
# In lecture 1 most codes appear somewhere, yet the background's single code drags the
# perplexity far below `K`; lecture 5 counts the dead codes (used zero times) separately.
#
# Write `perplexity(indices, num_codes)`: `indices` is a long tensor of any shape (for
# example `(B, h, w)`); return a scalar (0-dimensional) float tensor.
# `torch.bincount` counts how often each code occurs.

# %%
def perplexity(indices, num_codes):
    """exp(entropy of code usage) for a long tensor of code indices of any shape -> scalar tensor."""
    ### BEGIN SOLUTION
    counts = torch.bincount(indices.reshape(-1), minlength=num_codes).float()
    probs = counts / counts.sum()
    entropy = -torch.special.xlogy(probs, probs).sum()     # xlogy(0, 0) = 0
    return torch.exp(entropy)
    ### END SOLUTION


# %% tags=["check"]
# Check: every one of 8 codes used equally often, then one code used everywhere.
with skip_if_unanswered():
    even = torch.arange(8).repeat(2, 3, 1).reshape(2, 3, 8)               # (2, 3, 8), each code 6 times
    value = perplexity(even, 8)
    assert torch.is_tensor(value) and value.dim() == 0, f"expected a scalar tensor, got {value!r}"
    assert abs(float(value) - 8.0) < 1e-4, f"8 codes used equally: expected 8.0, got {float(value):.4f}"
    value = perplexity(torch.full((2, 4, 4), 3), 8)
    assert abs(float(value) - 1.0) < 1e-4, f"a single code used: expected 1.0, got {float(value):.4f} (is 0 * log 0 taken as 0?)"
    print("perplexity: the check passed")

# %% tags=["hidden-tests"] question="perplexity" points=2
g = rng(5)


def verdict(r, shape, K, expected):
    got = r.value
    assert torch.is_tensor(got) and got.dim() == 0, f"expected a scalar tensor, got {type(got).__name__}"
    assert math.isfinite(float(got)), f"indices of shape {shape} with {K} codes (some unused): the result is not finite (is 0 * log 0 taken as 0?)"
    assert abs(float(got) - expected) < 1e-3 * expected, f"indices of shape {shape} with {K} codes, some unused: the value is not exp(entropy of code usage)"


# The visible check's own inputs: here the feedback may show the numbers.
def visible_verdict(r, what, expected):
    got = r.value
    assert torch.is_tensor(got) and got.dim() == 0, f"expected a scalar tensor, got {type(got).__name__}"
    assert abs(float(got) - expected) < 1e-4, f"{what}: expected {expected}, got {float(got):.6g}"


check(Call("perplexity", torch.arange(8).repeat(2, 3, 1).reshape(2, 3, 8), 8), visible_verdict, visible=True,
      what="8 codes used equally", expected=8.0)
check(Call("perplexity", torch.full((2, 4, 4), 3), 8), visible_verdict, visible=True, what="a single code used", expected=1.0)


for shape, K in (((4, 3, 5), 16), ((2, 8, 8), 6), ((5, 2, 3), 64)):
    idx = torch.randint(0, K, shape, generator=g)
    idx[0] = 0                                  # make usage uneven
    counts = [int((idx == k).sum()) for k in range(K)]
    n = sum(counts)
    expected = math.exp(-sum(c / n * math.log(c / n) for c in counts if c))
    check(Call("perplexity", idx, K), verdict, shape=shape, K=K, expected=expected)

# %% [markdown]
# ## Putting the two together
#
# Quantize random encoder outputs with a random codebook and watch the perplexity. With
# vectors spread like the codebook, most codes get used; shift the encoder outputs far away
# from the codebook and only the few codes on its rim win, which is how codebook collapse
# looks in a real training run.

# %% tags=["uses-answers"]
with skip_if_unanswered():
    codebook = torch.randn(32, 8)
    z_e = torch.randn(4, 8, 6, 6)
    idx, _ = nearest_code(z_e, codebook)
    print(f"spread like the codebook: perplexity {float(perplexity(idx, 32)):.1f} of 32")
    idx, _ = nearest_code(z_e + 10.0, codebook)
    print(f"shifted far away:         perplexity {float(perplexity(idx, 32)):.1f} of 32")
