# ---
# jupyter:
#   dlstudio_lite:
#     exercise: ex06_vqgan
#     title: 'Exercise 6: VQGAN losses and sampling from the prior'
#   jupytext:
#     formats: py:percent
#     notebook_metadata_filter: dlstudio_lite
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
    ### BEGIN SOLUTION
    rec_grad = torch.autograd.grad(rec_loss, last_layer_weight, retain_graph=True)[0]
    gan_grad = torch.autograd.grad(gan_loss, last_layer_weight, retain_graph=True)[0]
    lam = rec_grad.norm() / (gan_grad.norm() + delta)
    return lam.clamp(0.0, max_value).detach()
    ### END SOLUTION


# %% tags=["check"]
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

# %% tags=["hidden-tests"] question="adaptive_lambda" points=3
# The student's function gets two losses that share a small decoder; the graph is built in
# the sandbox from these whitelisted ops, and the same graph here gives the expected value.
g = rng(5)
x, noise = torch.randn(6, 3, generator=g), torch.randn(6, 4, generator=g)
W1, b1, W2, b2, Wd, bd = (torch.randn(*shape, generator=g).mul_(scale).requires_grad_() for shape, scale in
                          (((8, 4), 0.5), ((8,), 0.5), ((3, 8), 0.35), ((3,), 0.35), ((1, 3), 0.6), ((1,), 0.6)))
x_hat = Op("linear", Op("relu", Op("linear", noise, W1, b1)), W2, b2)
rec = Op("mean", Op("pow", Op("sub", x, x_hat), 2))
gan = Op("neg", Op("mean", Op("linear", x_hat, Wd, bd)))
rec_value, gan_value = rec.value(), gan.value()
g_rec = torch.autograd.grad(rec_value, W2, retain_graph=True)[0]
g_gan = torch.autograd.grad(gan_value, W2, retain_graph=True)[0]


def verdict(r, delta, cap, label):
    lam = r.value
    expected = (g_rec.norm() / (g_gan.norm() + delta)).clamp(0, cap)
    assert torch.is_tensor(lam) and lam.numel() == 1, "lambda should be a scalar tensor"
    assert torch.allclose(lam.detach(), expected, rtol=1e-4), f"{label}: lambda is not |grad rec| / (|grad gan| + delta), clamped to [0, max_value]"
    assert not lam.requires_grad, "lambda is not detached"
    assert not isinstance(r.grads[0], str) and r.grads[0][0] is not None, \
        "after adaptive_lambda the generator can no longer backpropagate its loss"
    for name, t in (("the decoder's first weight", W1), ("its first bias", b1), ("its last bias", b2),
                    ("the last weight", W2), ("the discriminator's weight", Wd)):
        assert r.grad_after_call(t) is None, f"adaptive_lambda left a .grad on {name}: use torch.autograd.grad, not .backward()"


ratio = float(g_rec.norm() / g_gan.norm())
for delta, cap, label in ((1e-4, 1e4, "delta=1e-4, max_value far above the ratio"),
                          (1e-6, ratio / 2, "delta=1e-6, max_value below the ratio")):
    check(Call("adaptive_lambda", rec, gan, W2, delta=delta, max_value=cap,
               grads=[Grad([(rec, None), (gan, None)], wrt=[W2])]), verdict, delta=delta, cap=cap, label=label)

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
    ### BEGIN SOLUTION
    return 0.5 * (F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean())
    ### END SOLUTION


def hinge_g_loss(logits_fake):
    """Generator's adversarial loss from the discriminator's logits on generated images -> scalar."""
    ### BEGIN SOLUTION
    return -logits_fake.mean()
    ### END SOLUTION


# %% tags=["check"]
with skip_if_unanswered():
    real, fake = torch.tensor([2.0, 0.5]), torch.tensor([-2.0, 0.0])
    value = hinge_d_loss(real, fake)
    assert abs(float(value) - 0.375) < 1e-6, f"real (2, 0.5), fake (-2, 0): expected 0.375, got {float(value)}"
    value = hinge_d_loss(torch.full((3,), 1.5), torch.full((3,), -1.5))
    assert abs(float(value)) < 1e-6, f"real logits above +1 and fake below -1 should cost nothing, got {float(value)}"
    value = hinge_g_loss(torch.tensor([[1.0, 3.0]]))
    assert abs(float(value) + 2.0) < 1e-6, f"fake logits (1, 3): expected -2.0, got {float(value)}"
    print("hinge losses: the checks passed")

# %% tags=["hidden-tests"] question="hinge_losses" points=2
g = rng(14)


def d_verdict(r, expected, shape):
    got = r.tensor()
    assert got.dim() == 0, f"logits {shape}: the discriminator loss should be a scalar, got shape {tuple(got.shape)}"
    assert torch.allclose(got, expected, atol=1e-6), \
        f"discriminator loss on random logits {shape}: not 0.5 * (mean relu(1 - real) + mean relu(1 + fake))"


def g_verdict(r, expected, shape):
    got = r.tensor()
    assert got.dim() == 0, f"logits {shape}: the generator loss should be a scalar, got shape {tuple(got.shape)}"
    assert torch.allclose(got, expected, atol=1e-6), f"generator loss on logits {shape}: not -mean(fake logits)"


for shape in ((2, 1, 5, 5), (1, 1, 3, 7)):
    real, fake = torch.randn(*shape, generator=g) * 2, torch.randn(*shape, generator=g) * 2
    expected = 0.5 * (torch.clamp(1 - real, min=0).mean() + torch.clamp(1 + fake, min=0).mean())
    check(Call("hinge_d_loss", real, fake), d_verdict, expected=expected, shape=shape)
    check(Call("hinge_g_loss", fake), g_verdict, expected=-fake.mean(), shape=shape)

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
    ### BEGIN SOLUTION
    logits = logits / temperature
    kth = torch.topk(logits, k, dim=-1).values[:, -1:]             # (B, 1): the k-th largest
    logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = F.softmax(logits, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)
    ### END SOLUTION


# %% tags=["check"]
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

# %% tags=["hidden-tests"] question="top_k_sampling" points=3
g = rng(6)
logits = torch.randn(3, 10, generator=g) * 2


def allowed_verdict(r, k, allowed):
    idx = r.tensor()
    assert tuple(idx.shape) == (3,), f"logits (3, 10): expected shape (3,), got {tuple(idx.shape)}"
    for b in range(3):
        assert int(idx[b]) in allowed[b].tolist(), f"k={k}: an index outside the top {k} was drawn"


for k in (1, 3):
    allowed = torch.topk(logits, k, dim=1).indices
    for s in range(100):
        check(Call("top_k_sample", logits, k, generator=Gen(s)), allowed_verdict, k=k, allowed=allowed)

def batch_of_one_verdict(r):
    idx = r.tensor()
    assert tuple(idx.shape) == (1,) and idx.dtype == torch.long, \
        f"logits (1, 10): expected long indices of shape (1,), got {idx.dtype} of shape {tuple(idx.shape)}"


check(Call("top_k_sample", logits[:1], 3, generator=Gen(0)), batch_of_one_verdict)

# The generator decides the draws: two generators in the same state give the same draws, one
# in another state different ones (64 rows of uneven logits: equal draws by chance are out of
# the question). The sandbox seeds torch's global generator with 0 before every call, so an
# answer that ignores `generator` draws the same for every generator, whatever its tie order.
wide = torch.randn(64, 10, generator=g) * 1.5


def generator_verdict(rs, k, allowed):
    first, again, other = (r.tensor() for r in rs)
    for draws in (first, again, other):
        assert tuple(draws.shape) == (64,), f"logits (64, 10): expected shape (64,), got {tuple(draws.shape)}"
        assert all(int(i) in row for i, row in zip(draws.tolist(), allowed)), f"k={k}: an index outside the top {k} was drawn"
    assert torch.equal(first, again), f"k={k}: two generators in the same state gave different draws: draw only with `generator`"
    assert not torch.equal(first, other), \
        f"k={k}: generators in different states gave the same draws: the draws ignore the generator argument"


for k in (10, 4):
    calls = [Call("top_k_sample", wide, k, generator=Gen(seed)) for seed in (100 + k, 100 + k, 200 + k)]
    check(tuple(calls), generator_verdict, k=k, allowed=torch.topk(wide, k, dim=1).indices.tolist())

# With temperature 0.5 and k = V the draws must follow softmax(logits / 0.5).
row = torch.tensor([[1.0, 0.5, 0.0, -0.5]])
n = 4000


def temperature_verdict(r):
    draws = r.tensor()
    assert tuple(draws.shape) == (n,), f"logits ({n}, 4): expected shape ({n},), got {tuple(draws.shape)}"
    freq = torch.bincount(draws.long().clamp(0, 3), minlength=4).float() / n
    expected = torch.softmax(row[0] / 0.5, 0)
    assert (freq - expected).abs().max() < 0.03, "temperature 0.5: the draws do not follow softmax(logits / temperature)"


check(Call("top_k_sample", row.expand(n, 4), 4, temperature=0.5, generator=Gen(0)), temperature_verdict)

# %% [markdown]
# ## Sampling a sequence from a prior
#
# A real prior is a transformer that reads all earlier indices. To watch the sampler alone,
# take a made-up first-order prior: a fixed table of next-index logits. Generating a
# sequence repeats "look at the last index, sample the next". Lower temperature and smaller
# `k` make the sequence more repetitive, larger ones more varied.

# %% tags=["uses-answers"]
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
