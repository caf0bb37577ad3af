# ---
# jupyter:
#   dlstudio_lite:
#     exercise: ex06_vqgan
#     kind: exercise
#     title: 'Exercise 6: VQGAN losses and sampling from the prior'
#   jupytext:
#     formats: ipynb,py:percent
#     notebook_metadata_filter: dlstudio_lite,-jupytext.text_representation
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Exercise 6: VQGAN losses and sampling from the prior
#
# VQGAN adds a discriminator to the VQ-VAE. The generator (encoder, codebook, decoder)
# minimises the reconstruction loss plus $\lambda$ times an adversarial loss, and the
# lecture's Eq. (26) chooses $\lambda$ automatically so that neither term drowns the other:
#
# $$\lambda = \frac{\lVert\nabla_{G_L}\mathcal{L}_{rec}\rVert}{\lVert\nabla_{G_L}\mathcal{L}_{GAN}\rVert + \delta},$$
#
# the ratio of the two losses' gradient norms at the decoder's last layer $G_L$. In stage
# two a transformer learns the sequence of code indices and new images are made by sampling
# indices from it one at a time.

# %%
import contextlib

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
# ## Question 1 (3 points): the adaptive weight lambda
#
# Write `adaptive_lambda(rec_loss, gan_loss, last_layer_weight, delta=1e-6, max_value=1e4)`:
#
# * take the gradients of both (scalar) losses with respect to `last_layer_weight` with
#   `torch.autograd.grad`, keeping the graph (`retain_graph=True`): the generator will still
#   call `backward()` on its total loss afterwards;
# * return the ratio of their norms, clamped to `[0, max_value]` and detached (lambda is a
#   weight, not something to differentiate through), as a scalar tensor.
#
# The default `delta = 1e-6` is the package's (lecture 6). It only keeps the division defined
# when the GAN gradient vanishes; taming-transformers, the reference VQGAN code, adds `1e-4`.
# While the GAN gradient's norm is far above `delta`, the ratio hardly depends on which small
# value you pick.

# %%
def adaptive_lambda(rec_loss, gan_loss, last_layer_weight, delta=1e-6, max_value=1e4):
    """Eq. (26): ||grad rec|| / (||grad gan|| + delta) at the decoder's last weight -> scalar tensor."""
    # YOUR CODE HERE
    raise NotImplementedError("Question 1 is not answered yet: fill in adaptive_lambda() and delete this raise")


# %% tags=["raises-exception"]
with skip_if_unanswered():
    layer = nn.Linear(3, 2)
    out = layer(torch.ones(4, 3))
    rec, gan = (out**2).mean(), -out.mean()
    lam = adaptive_lambda(rec, gan, layer.weight)
    g_rec = torch.autograd.grad(rec, layer.weight, retain_graph=True)[0]
    g_gan = torch.autograd.grad(gan, layer.weight, retain_graph=True)[0]
    expected = g_rec.norm() / (g_gan.norm() + 1e-6)
    assert torch.is_tensor(lam) and lam.dim() == 0, f"expected a scalar tensor, got {lam!r}"
    expect_close("lambda", lam, expected, rtol=1e-4)
    assert not lam.requires_grad, "lambda should be detached"
    for name, p in layer.named_parameters():
        assert p.grad is None, f"adaptive_lambda left a .grad on layer.{name}: use torch.autograd.grad, not .backward()"
    expect_close("lambda with max_value=0.1 (clamped)", adaptive_lambda(rec, gan, layer.weight, max_value=0.1), min(float(expected), 0.1))
    (rec + lam * gan).backward()   # fails if adaptive_lambda freed the graph
    print("adaptive_lambda: the check passed")


# %% [markdown]
# ## Question 2 (2 points): hinge losses
#
# The discriminator outputs a logit per image patch. With the hinge loss it is trained to
# push real logits above `+1` and fake logits below `-1`; the generator is trained to raise
# the discriminator's logits on its fakes:
#
# $$\mathcal{L}_D = \tfrac12\left(\mathbb{E}[\mathrm{relu}(1 - D(x))] + \mathbb{E}[\mathrm{relu}(1 + D(\hat x))]\right),\qquad \mathcal{L}_G = -\mathbb{E}[D(\hat x)].$$
#
# Write both; the inputs are logits of any shape, the results scalar tensors.

# %%
def hinge_d_loss(logits_real, logits_fake):
    """Discriminator hinge loss from logits on real and on generated images -> scalar."""
    # YOUR CODE HERE
    raise NotImplementedError("Question 2 is not answered yet: fill in hinge_d_loss() and delete this raise")


def hinge_g_loss(logits_fake):
    """Generator's adversarial loss from the discriminator's logits on generated images -> scalar."""
    # YOUR CODE HERE
    raise NotImplementedError("Question 2 is not answered yet: fill in hinge_g_loss() and delete this raise")


# %% tags=["raises-exception"]
with skip_if_unanswered():
    real, fake = torch.tensor([2.0, 0.5]), torch.tensor([-2.0, 0.0])
    value = hinge_d_loss(real, fake)
    assert abs(float(value) - 0.375) < 1e-6, f"real (2, 0.5), fake (-2, 0): expected 0.375, got {float(value)}"
    value = hinge_d_loss(torch.full((3,), 1.5), torch.full((3,), -1.5))
    assert abs(float(value)) < 1e-6, f"real logits above +1 and fake below -1 should cost nothing, got {float(value)}"
    value = hinge_g_loss(torch.tensor([[1.0, 3.0]]))
    assert abs(float(value) + 2.0) < 1e-6, f"fake logits (1, 3): expected -2.0, got {float(value)}"
    print("hinge losses: the checks passed")


# %% [markdown]
# ## Question 3 (3 points): top-k sampling
#
# The prior outputs logits over the `V` code indices for the next position. Sampling
# straight from the softmax sometimes picks very unlikely codes that spoil an image;
# *top-k* sampling keeps only the `k` largest logits (the others get probability zero),
# divides by a *temperature* (below 1: sharper, above 1: flatter) and samples from the
# softmax of what remains.
#
# Write `top_k_sample(logits, k, temperature=1.0, generator=None)`: `logits` has shape
# `(B, V)`; return `(B,)` long indices. `torch.topk` and `torch.multinomial` (which accepts
# a `generator`) do the work.

# %%
def top_k_sample(logits, k, temperature=1.0, generator=None):
    """One index per row from the softmax of the k largest logits / temperature: (B, V) -> (B,)."""
    # YOUR CODE HERE
    raise NotImplementedError("Question 3 is not answered yet: fill in top_k_sample() and delete this raise")


# %% tags=["raises-exception"]
with skip_if_unanswered():
    logits = torch.tensor([[0.0, 5.0, 1.0, 4.0], [3.0, 0.0, 2.0, 1.0]])
    draws = torch.stack([top_k_sample(logits, 2, generator=torch.Generator().manual_seed(s)) for s in range(200)])
    assert tuple(draws.shape) == (200, 2), f"expected one index per row, shape (2,) per call, got {tuple(draws.shape[1:])}"
    assert set(draws[:, 0].tolist()) <= {1, 3} and set(draws[:, 1].tolist()) <= {0, 2}, \
        "an index outside the top 2 was drawn"
    assert set(draws[:, 0].tolist()) == {1, 3}, f"k=2: both of the two largest logits (1 and 3) should be drawn in 200 tries, got {set(draws[:, 0].tolist())}"
    greedy = top_k_sample(logits, 1)
    assert torch.equal(greedy, torch.tensor([1, 0])), f"k=1 must return the argmax (1, 0), got {greedy}"
    one = top_k_sample(logits[:1], 2)
    assert tuple(one.shape) == (1,), f"a batch of one, logits (1, 4): expected shape (1,), got {tuple(one.shape)}"
    many = logits[:1].expand(64, 4)
    a, b = (top_k_sample(many, 4, generator=torch.Generator().manual_seed(3)) for _ in range(2))
    assert torch.equal(a, b), "two calls with generators seeded alike gave different draws: pass generator= to torch.multinomial"
    # Temperature 0.5 sharpens: the frequencies must follow softmax(logits / 0.5).
    row = torch.tensor([[1.0, 0.5, 0.0, -0.5]])
    draws = top_k_sample(row.expand(4000, 4), 4, temperature=0.5, generator=torch.Generator().manual_seed(0))
    expect_close("frequencies with temperature 0.5", torch.bincount(draws, minlength=4) / 4000., torch.softmax(row[0] / 0.5, 0), rtol=0, atol=0.03)
    print("top_k_sample: the check passed")

# %% [markdown]
# ## Sampling a sequence from a prior
#
# A real prior is a transformer that reads all earlier indices. To watch the sampler alone,
# take a made-up first-order prior: a fixed table of next-index logits. Generating a
# sequence repeats "look at the last index, sample the next". Lower temperature and smaller
# `k` make the sequence more repetitive, larger ones more varied.

# %% tags=["raises-exception"]
with skip_if_unanswered():
    torch.manual_seed(0)
    V = 16
    table = torch.randn(V, V) * 3                      # logits of the next index given the last one
    for k, temperature in ((1, 1.0), (4, 0.7), (16, 1.5)):
        gen = torch.Generator().manual_seed(0)
        seq = [0]
        for _ in range(24):
            seq.append(int(top_k_sample(table[seq[-1]].unsqueeze(0), k, temperature, gen)))
        print(f"k={k:2d}, temperature={temperature}: {seq}  ({len(set(seq))} distinct)")
