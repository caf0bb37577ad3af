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
# # Appendix A (lecture 7): VAE against VQ-VAE on several datasets, and the pitfalls of a student project
#
# One of the course's source documents is a student project (`seeds/000_...`) that trained a
# VAE and a VQ-VAE on MNIST, CIFAR-10 and CelebA. Its slides hold a comparison table ("VAE:
# generally good, but blurry"; "VQ-VAE: high fidelity") and the mistakes the team lost time
# on: normalisation constants that produced black blotches, a colour jitter that hurt the
# reconstructions, a channel order mix-up. This appendix redoes the comparison with the
# course's models, measures what the table only states, and turns each mistake into a small
# experiment with a picture.
#
# **What you will learn**
#
# - why a fair comparison of a VAE and a VQ-VAE fixes the *latent rate*, and how to measure
#   it in bits per image for both (KL in bits; code entropy times grid size);
# - the comparison on every dataset you have: the shapes, scikit-learn's handwritten digits
#   and patches of scikit-image's photographs on every machine set up for the course (nothing to
#   download), MNIST, CIFAR-10,
#   CelebA and your own image folders when they are on disk;
# - the student table, filled in with measured numbers, the students' own settings next to
#   them;
# - what the normalisation 0.4 / 0.4 does to the range of the data, and one way it turns
#   into black blotches;
# - why colour jitter works against a model whose target is its own input;
# - what a `(C, H, W)` tensor looks like when it is shown or reshaped as `(H, W, C)`;
# - walking in latent space between two images, with both models.

# %%
# %matplotlib inline

import json
import math
import re
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from IPython.display import Markdown, display
from torch.utils.data import Subset, TensorDataset

from dlstudio_lite import (CHECKPOINTS, DATA_ROOT, VAE, VQVAE, DatasetUnavailableError, ShapesDataset,
                           latent_rate, load_dataset, load_or_train, pick, psnr, quality_report,
                           quick_mode, recipe, seed_everything)
from dlstudio_lite.claims import claim, say, summary
from dlstudio_lite.data import shape_colour_bits
from dlstudio_lite.metrics import colourfulness_kept, edge_sharpness, shape_colour_error
from dlstudio_lite.plot import show_images, show_side_by_side
from dlstudio_lite.quantize import kmeans, nearest_codes

seed_everything(0)
print("quick mode:", quick_mode())

# %% [markdown]
# ## 1. Which datasets are on this machine?
#
# The shapes are generated here, so they are always available. Two real datasets ship inside
# Python packages that the course's set-up installs (the `realdata` extra), so they need no
# download either:
#
# - **digits**: scikit-learn's handwritten digits, 8 x 8 pixels with 17 grey levels, given a
#   one-pixel black margin and scaled up to 32 x 32 (so they look soft), grey in all three
#   channels. The test split is the last digits in scikit-learn's order.
# - **patches**: 32 x 32 tiles cut, overlapping by half, from six colour photographs of
#   scikit-image: an astronaut, a cup of coffee, a stained tissue sample and a motorcycle for
#   training, a cat and a rocket for testing. Train and test come from different photographs, so
#   a model cannot have seen a test tile's neighbours.
#
# How many images each split holds is printed below, where the models are loaded.
#
# The others are looked for under the data folder (`data/`, or `$DLSTUDIO_LITE_DATA`), without
# downloading anything:
#
# | dataset | how to get it |
# | --- | --- |
# | digits, patches | part of the set-up; if missing: `pip install -e '.[realdata]'` in the course folder |
# | MNIST, CIFAR-10 | once, with internet: `python -c "from dlstudio_lite import load_dataset; load_dataset('cifar10')"` (same for `'mnist'`); torchvision puts the files under `data/` |
# | CelebA | torchvision's download from Google Drive often fails (quota). Download `img_align_celeba.zip`, `list_attr_celeba.txt`, `identity_CelebA.txt`, `list_bbox_celeba.txt`, `list_landmarks_align_celeba.txt` and `list_eval_partition.txt` from the CelebA page and put them in `data/celeba/` |
# | your images | any folder with one sub-folder per class (torchvision's `ImageFolder` layout), e.g. the skin-lesion images of another student project: add its path to `IMAGE_FOLDERS` below |
#
# Every image is resized to 32 x 32 here (CelebA centre-cropped), which keeps each training
# run short on a CPU.

# %%
IMAGE_SIZE = 32
IMAGE_FOLDERS = []          # e.g. ["/home/me/lesions"]: each becomes the dataset "folder:PATH"

OFFLINE = ["digits", "patches"]     # real images inside scikit-learn / scikit-image

found, missing = {}, []
for name in OFFLINE + ["mnist", "cifar10", "celeba"] + [f"folder:{p}" for p in IMAGE_FOLDERS]:
    try:
        found[name] = load_dataset(name, "test", image_size=IMAGE_SIZE, download=False)
    except (DatasetUnavailableError, FileNotFoundError) as err:
        missing.append(name)
        if name in OFFLINE:           # the set-up's extra is missing: its message says how to add it
            print(f"{name}: {err}")
        else:
            offline_hint = str(err).rsplit(". ", 1)[-1]
print("found:  ", ", ".join(["shapes"] + list(found)))
print("missing:", ", ".join(missing) or "none", "(the table above says how to get them)")
if set(missing) - set(OFFLINE):
    print("the error says:", offline_hint)

# %% [markdown]
# When a dataset is missing, `load_dataset` raises a `DatasetUnavailableError` whose message
# says what to do: for MNIST, CIFAR-10 and CelebA it names the offline alternative, the shapes;
# for digits and patches it names the package to install. The rest of the notebook runs on what
# was found: on a machine set up for the course, at least the shapes, the digits and the patches.
#
# ## 2. A fair comparison fixes the latent rate
#
# A VAE and a VQ-VAE can always be made to look better or worse than each other by giving one
# of them a bigger latent. Lecture 5's first comparison fell into this: its VQ-VAE had four
# times as many latent cells as the VAE. Here both models get **the same latent grid**
# ($8 \times 8$ cells for a $32 \times 32$ image, one cell per $4 \times 4$ patch), the same
# encoder and decoder (`base_channels=16`), the same data, steps and optimizer, and we measure
# how much information each latent carries, in **bits per image**
# (`dlstudio_lite.latent_rate`):
#
# - **VAE**: the KL divergence $\mathrm{KL}(q(z|x)\,\|\,\mathcal{N}(0, I))$, converted from nats to
#   bits (divide by $\ln 2$). It is the ELBO's "rate" term: what it costs to tell a receiver who
#   knows the prior where the posterior sits. Its 16 Gaussian channels per cell do not fix
#   the rate; the KL weight $\beta$ (the lecture's 0.1) does.
# - **VQ-VAE**: each cell holds one of $K$ codes. With the code frequencies $p_k$ measured
#   over the test images, an ideal coder needs the entropy $H = -\sum_k p_k \log_2 p_k$ bits per
#   cell, so $64 H$ bits per image, at most $64 \log_2 K$.
#
# **Which rate?** The rate has to be high enough for what the comparison is about. The
# report's claim is about fidelity, and on the shapes fidelity starts with colour: every shape
# is painted in a random colour, and a model that cannot carry it paints the average colour,
# grey. The cell below counts the bits of one shape's colour. A code of a $K$-entry codebook
# carries at most $\log_2 K$ bits for its whole $4 \times 4$ patch, edges and colour together:
# with $K = 16$ (4 bits) the codebook holds only 16 patch patterns in all, so both models would
# be compared where neither can show a colour, and the comparison would say nothing about
# fidelity. So the VQ-VAE gets $K = 512$ codes (at most 9 bits per cell, $64 \times 9 = 576$
# bits per image), and the VAE the KL weight $\beta$ that brings its KL to about the same
# number of bits. We chose that $\beta$ by interpolating (on log scales) the rates of lecture 4's $\beta$ sweep (same grid,
# same width: about 240 bits at $\beta = 0.1$, 785 at 0.01) after measuring the VQ-VAE's rate;
# the numbers below say how close the two rates came.
#
# In normal mode the models come from `data/checkpoints/crossdata_shapes/`,
# `crossdata_digits/` and `crossdata_patches/` (two `dlstudio-lite train` commands per dataset,
# 2,000 steps each, listed in `data/checkpoints/README.md`): the same models, steps and
# optimizer on every dataset, only the data and the VAE's $\beta$ differ (how $\beta$ was chosen
# per dataset: after the shapes' results below). MNIST, CIFAR-10, CelebA and your folders use
# `data/checkpoints/crossdata_NAME/` when you have trained those with the shapes' commands
# (`--dataset cifar10 --out data/checkpoints/crossdata_cifar10/vae`, ...), and otherwise a short
# run here (`LIVE_STEPS` steps per model, with the shapes' $\beta$).

# %%
# The recipes crossdata_NAME/vae and crossdata_NAME/vqvae (dlstudio_lite/recipes.py) hold both
# models and their training for the shapes, the digits and the patches; another dataset runs
# the shapes' recipe, shorter.
SHIPPED = ["shapes"] + [name for name in OFFLINE if name in found]
SHAPES = recipe("crossdata_shapes/vae").data_config()   # quick mode: the quick variant's data
LIVE_STEPS = 300    # training steps for a dataset without a checkpoint (normal mode)
N_EVAL = pick(normal=200, quick=32)


def splits(name):
    if name in SHIPPED:
        return recipe(f"crossdata_{name}/vae").data_config().splits()
    return load_dataset(name, "train", image_size=IMAGE_SIZE, download=False), found[name]


def spread(test, n):
    """n test images spread evenly over the split: the patches' test split is a cat photograph's
    tiles, row by row, then a rocket's, and its first 200 tiles would be the cat's top rows only."""
    return Subset(test, torch.linspace(0, len(test) - 1, min(n, len(test))).round().long().tolist())


# A shape's colour (data.py): each channel one of the 216 levels 40..255, then one channel, chosen
# at random, redrawn among the 86 bright levels 170..255; so m channels at 170 or above can be
# chosen in comb(3, m) * 86**m * 130**(3 - m) ways. Its entropy: data.shape_colour_bits().
SHAPE_COLOURS = sum(math.comb(3, m) * 86 ** m * 130 ** (3 - m) for m in (1, 2, 3))
colour_bits = shape_colour_bits()
say(f"One shape's colour: {SHAPE_COLOURS:,} possible colours, not all equally likely, which carry "
    f"{colour_bits:.1f} bits. A code from a codebook of 16 entries carries at most {math.log2(16):.0f} bits "
    f"for its whole patch, one from 512 entries {math.log2(512):.0f} bits.",
    (SHAPE_COLOURS == 216 ** 3 - 130 ** 3, "the colours are those with at least one channel at 170 or above"),
    (21 < colour_bits < math.log2(SHAPE_COLOURS), "about 22 bits, less than if all colours were equally likely"),
    quick=True)


def trained(name, kind, train, test):
    """The shipped (or your own) checkpoint for this dataset, else its recipe trained here."""
    folder = "crossdata_" + re.sub(r"[^a-z0-9]+", "_", name.lower().split(":", 1)[-1]).strip("_")
    ckpt = CHECKPOINTS / folder / kind / "checkpoint.pt"
    live = {} if name in SHIPPED or quick_mode() else {"steps": LIVE_STEPS}
    model, history = load_or_train(f"{folder if name in SHIPPED else 'crossdata_shapes'}/{kind}", train,
                                   test, checkpoint=ckpt, progress=False, **live)
    loaded = ckpt.exists() and not quick_mode()
    steps = history["train/loss"][-1][0]
    return model.cpu().eval(), f"loaded from {folder}/{kind}" if loaded else f"trained here, {steps} steps"


models = {}
for name in ["shapes"] + list(found):
    train, full_test = splits(name)
    test = spread(full_test, N_EVAL)
    seed_everything(0)
    vae, vae_source = trained(name, "vae", train, test)
    seed_everything(0)
    vq, vq_source = trained(name, "vqvae", train, test)
    x = torch.stack([test[i][0] for i in range(len(test))])
    y = torch.stack([torch.as_tensor(test[i][1]) for i in range(len(test))])   # labels (patches: the photograph)
    models[name] = {"vae": vae, "vqvae": vq, "x": x, "y": y}
    print(f"{name:8s} {len(train):,} training and {len(full_test):,} test images ({len(test)} of them "
          f"evaluated below, spread over the split)\n         VAE: {vae_source}   VQ-VAE: {vq_source}")

# %% [markdown]
# ### Measuring both models
#
# For every dataset: the rate (bits per image), the reconstruction error of the test images
# (PSNR; the VAE decodes its posterior mean, without sampling noise), and samples. A VAE
# samples by decoding $z \sim \mathcal{N}(0, I)$. A VQ-VAE on its own has no prior over its
# code grids (lecture 6 trains one); the closest fair counterpart to the VAE's
# independent-per-cell prior is to draw every cell's code **independently** from the code
# frequencies of the test set. Neither sampler knows anything about where shapes go.
#
# On the shapes, the course's sample-quality measures add two numbers (lecture 6):
# the Frechet distance (FD) between features of real test images and of the reconstructions
# or samples, computed with a small network trained on the shapes (**not** ImageNet FID), and
# the valid-shape rate, the share of images that network judges to be clean pictures of 1 to
# 5 shapes. Both are only meaningful for shapes images, so other datasets get PSNR and rate,
# and those in colour (the patches) a measure of how much colour the reconstructions keep.


# %%
@torch.no_grad()
def vq_samples(vq, x, n, generator):
    """Decode code grids whose cells are drawn independently from the code frequencies of x."""
    codes = vq.encode_to_indices(x)
    freq = torch.bincount(codes.flatten(), minlength=vq.num_codes).float()
    drawn = torch.multinomial(freq / freq.sum(), n * codes[0].numel(), replacement=True, generator=generator)
    return vq.decode_indices(drawn.view(n, *codes.shape[1:]))


@torch.no_grad()
def measure(name, m):
    x, vae, vq = m["x"], m["vae"], m["vqvae"]
    print(f"{name}: reconstructions and samples of {len(x)} test images", flush=True)
    g = torch.Generator().manual_seed(0)
    out = {"recon": {"VAE": vae.reconstruct(x).clamp(-1, 1), "VQ-VAE": vq.reconstruct(x).clamp(-1, 1)},
           "samples": {"VAE": vae.sample(len(x), generator=g).clamp(-1, 1),
                       "VQ-VAE": vq_samples(vq, x, len(x), g).clamp(-1, 1)}}
    print(f"{name}: latent rates", flush=True)
    rate_vq = latent_rate(vq, TensorDataset(x))
    codes_used = int(vq.encode_to_indices(x).unique().numel())
    mu, logvar = vae.encode(x)
    kl_per_channel = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum((2, 3)).mean(0)   # nats
    out["numbers"] = {
        "bits": {"VAE": latent_rate(vae, TensorDataset(x))["bits_per_image"], "VQ-VAE": rate_vq["bits_per_image"]},
        "psnr": {k: float(psnr(v, x)) for k, v in out["recon"].items()},
        "mse": {k: float((v - x).pow(2).mean()) for k, v in out["recon"].items()},
        # posterior collapse / dead codes: latent channels with almost no KL, codes never used
        "in_use": {"VAE": f"{int((kl_per_channel > 0.5).sum())} of {vae.latent_channels} channels",
                   "VQ-VAE": f"{codes_used} of {vq.num_codes} codes used, perplexity "
                             f"{float(rate_vq['perplexity']):.0f}"},
    }
    if name == "shapes":
        print(f"{name}: shape features (FD, valid-shape rate), colours and edges", flush=True)
        out["numbers"]["quality"] = {f"{kind} {model}": quality_report(x, images)
                                     for kind in ("recon", "samples") for model, images in out[kind].items()}
        out["numbers"]["colour"] = {k: colour_kept(v, x) for k, v in out["recon"].items()}
        out["numbers"]["edges"] = {k: edge_sharpness(v, x) for k, v in out["recon"].items()}
    elif x.shape[1] == 3 and float(chroma(x).mean()) > 2:     # a colour dataset (the digits are grey)
        out["numbers"]["colour"] = {k: chroma_kept(v, x) for k, v in out["recon"].items()}
    return out


def chroma(x):
    """Each pixel's colourfulness, brightest minus darkest channel on the 0-255 scale: (B, H, W)."""
    c = (x + 1) * 127.5
    return c.amax(1) - c.amin(1)


def chroma_kept(recon, x):
    """How much of the images' colour the reconstructions keep, pixel by pixel (photographs have
    no shapes to measure): the colourfulness kept (summed over pixels, reconstructed over true:
    1 keeps it, 0 is grey) and the mean error of the colour alone (each pixel's grey level, the
    mean of its channels, taken out; 0-255 units), next to that of an all-grey reconstruction."""
    tint = lambda img: (img - img.mean(1, keepdim=True)) * 127.5       # noqa: E731
    return {"kept": float(chroma(recon).sum() / chroma(x).sum()),
            "error": float((tint(recon) - tint(x)).abs().mean()), "grey": float(tint(x).abs().mean())}


def colour_kept(recon, x):
    """How well the reconstructions keep the shapes' colours (0-255 units, per shape): the
    median colour error, and the colourfulness kept (max - min channel of the reconstructed
    colour over that of the true colour, summed over shapes): 1 keeps it, 0 is grey."""
    e = shape_colour_error(recon, x)
    return {"error": float(e["error"].median()), "kept": colourfulness_kept(e), "shapes": len(e["error"])}


def what_they_are(name, labels):
    """A title for a row of test images that says what they show: (B,) labels of the row."""
    if name == "digits":
        return "test images (the digits " + " ".join(str(int(d)) for d in labels) + ")"
    if name == "patches":
        from dlstudio_lite.realdata import ALL_PHOTOS
        photos = [ALL_PHOTOS[int(i)] for i in labels]
        return (f"test tiles ({photos.count('chelsea')} from the cat photograph, "
                f"{photos.count('rocket')} from the rocket's)")
    return "test images"


results = {name: measure(name, m) for name, m in models.items()}
for name, r in results.items():
    shown = torch.linspace(0, len(models[name]["x"]) - 1, 8).round().long()   # spread over the test images
    show_side_by_side({what_they_are(name, models[name]["y"][shown]): models[name]["x"][shown],
                       **{f"{k} reconstruction ({r['numbers']['psnr'][k]:.1f} dB, "
                          f"{r['numbers']['bits'][k]:.0f} bits/image)": v[shown] for k, v in r["recon"].items()},
                       **{f"{k} sample": v for k, v in r["samples"].items()}},
                      n=8, title=name)
    plt.show()

# %%
names = list(results)
fig, axes = plt.subplots(1, 3 if "shapes" in results else 2, figsize=(13, 3.4))
width = 0.38
for ax, key, label in zip(axes, ("bits", "psnr"), ("latent rate (bits per image)", "test PSNR (dB), one run per model")):
    for i, model in enumerate(("VAE", "VQ-VAE")):
        values = [results[n]["numbers"][key][model] for n in names]
        bars = ax.bar(np.arange(len(names)) + (i - 0.5) * width, values, width, label=model,
                      color=("tab:orange", "tab:blue")[i])
        ax.bar_label(bars, fmt="%.0f" if key == "bits" else "%.1f", fontsize=8)
    ax.set_xticks(range(len(names)), names)
    ax.set_title(label)
axes[0].set_ylim(0, 1.3 * axes[0].get_ylim()[1])          # room for the legend above the bars
axes[0].legend(loc="upper center", ncol=2)
if "shapes" in results:
    q = results["shapes"]["numbers"]["quality"]
    keys = list(q)
    bars = axes[2].barh(keys, [q[k]["fd"] for k in keys],
                        color=["tab:orange", "tab:blue"] * 2)
    axes[2].bar_label(bars, labels=[f"FD {q[k]['fd']:.0f}, valid {q[k]['valid_shape_rate']:.0%}" for k in keys],
                      fontsize=8, padding=3)
    axes[2].set_title("shapes: FD to the test images (lower is better)")
    axes[2].invert_yaxis()
    axes[2].set_xlim(0, 1.6 * max(q[k]["fd"] for k in keys))
plt.tight_layout()
plt.show()

# %%
n = results["shapes"]["numbers"]
bits, colour, q, edges, psnrs = n["bits"], n["colour"], n["quality"], n["edges"], n["psnr"]
gap = abs(bits["VQ-VAE"] / bits["VAE"] - 1)
CARRIES = 0.3    # share of the shapes' colourfulness a model must keep to be said to carry colour (grey: 0)
say(f"""**Reading the results (shapes).** The two rates came out within {gap:.0%} of each other:
{bits['VAE']:.0f} bits per image for the VAE, {bits['VQ-VAE']:.0f} for the VQ-VAE (about
{bits['VQ-VAE'] / 64:.1f} bits per $4 \\times 4$ patch). At this rate both models carry colour, though
not all of it: over {colour['VAE']['shapes']} shapes of the test images, the VAE keeps
{colour['VAE']['kept']:.0%} of their colourfulness and the VQ-VAE {colour['VQ-VAE']['kept']:.0%} (a grey
reconstruction keeps 0%, a perfect one 100%), with a median colour error per shape of
{colour['VAE']['error']:.0f} and {colour['VQ-VAE']['error']:.0f} on the 0-255 scale. So the comparison below
is made where both models show colours, if muted ones.""",
    (gap < 0.15, "the two rates came out within 15% of each other"),
    (min(c["kept"] for c in colour.values()) >= CARRIES,
     f"both models carry colour (each keeps at least {CARRIES:.0%} of the colourfulness)"),
    (max(c["kept"] for c in colour.values()) < 1, "... though not all of it"))

better = {  # measure: (VAE value, VQ-VAE value, does the VQ-VAE do better?)
    "test PSNR (dB)": (psnrs["VAE"], psnrs["VQ-VAE"], psnrs["VQ-VAE"] > psnrs["VAE"]),
    "FD of the reconstructions": (q["recon VAE"]["fd"], q["recon VQ-VAE"]["fd"],
                                  q["recon VQ-VAE"]["fd"] < q["recon VAE"]["fd"]),
    "valid-shape rate of the reconstructions": (q["recon VAE"]["valid_shape_rate"], q["recon VQ-VAE"]["valid_shape_rate"],
                                                q["recon VQ-VAE"]["valid_shape_rate"] > q["recon VAE"]["valid_shape_rate"]),
    "edge strength": (edges["VAE"], edges["VQ-VAE"], edges["VQ-VAE"] > edges["VAE"]),
    "median colour error": (colour["VAE"]["error"], colour["VQ-VAE"]["error"],
                            colour["VQ-VAE"]["error"] < colour["VAE"]["error"]),
}
wins = [k for k, v in better.items() if v[2]]
ahead, behind = ("VQ-VAE", "VAE") if 2 * len(wins) > len(better) else ("VAE", "VQ-VAE")
exceptions = [k for k, v in better.items() if v[2] != (ahead == "VQ-VAE")]
verdict = (("is borne out" if ahead == "VQ-VAE" else "is not borne out") + f": the {ahead} is ahead on "
           f"{len(better) - len(exceptions)} of the {len(better)} measures"
           + (f", the {behind} only on {', '.join(exceptions)}" if exceptions else ""))
FORMAT = {"valid-shape rate of the reconstructions": "{:.0%}"}     # the others: 3 significant digits
lines = [f"| {k} | {FORMAT.get(k, '{:.3g}').format(a)} | {FORMAT.get(k, '{:.3g}').format(b)} | "
         f"{'VQ-VAE' if w else 'VAE'} |" for k, (a, b, w) in better.items()]
say("| measure (shapes, test images) | VAE | VQ-VAE | better |\n| --- | --- | --- | --- |\n" + "\n".join(lines)
    + f"""\n\nThe slides' "VAE: generally good, but blurry; VQ-VAE: high fidelity", at this matched rate and
budget, {verdict}. Both models' edges are weaker than the originals' (edge strength, the
images' mean difference between neighbouring pixels over the originals': {edges['VAE']:.2f} and {edges['VQ-VAE']:.2f}; speckle
would raise this number too, so it is a weak measure of sharpness). Each model was trained once: a gap as small as the edge strengths'
({abs(edges['VQ-VAE'] / edges['VAE'] - 1):.0%}) is no ranking, and another seed could move the others too.""",
    (max(edges.values()) < 1, "both models' edges are weaker than the originals'"))

# %%
say(f"""Samples without a learned prior are poor for both models: an independent code (or Gaussian)
per cell knows nothing about shapes. The feature network calls {q['samples VAE']['valid_shape_rate']:.0%}
of the VAE's samples and {q['samples VQ-VAE']['valid_shape_rate']:.0%} of the VQ-VAE's clean shapes
images (reconstructions: {q['recon VAE']['valid_shape_rate']:.0%} and {q['recon VQ-VAE']['valid_shape_rate']:.0%}),
with FD {q['samples VAE']['fd']:.0f} and {q['samples VQ-VAE']['fd']:.0f}. For the VQ-VAE, lecture 6
trains a prior that learns which codes go together.""",
    (all(q[f"samples {m}"]["valid_shape_rate"] < q[f"recon {m}"]["valid_shape_rate"]
         and q[f"samples {m}"]["fd"] > q[f"recon {m}"]["fd"] for m in ("VAE", "VQ-VAE")),
     "samples without a learned prior are worse than the reconstructions, for both models"))

# %% [markdown]
# ### The digits and the patches
#
# The shapes' $\beta = 0.019$ matched the two rates on the shapes only. On other images both
# rates move: a VQ-VAE's entropy depends on how varied the patches are, a VAE's KL on how much
# the images hold that is worth its price. So on the digits and the patches the VQ-VAE was
# trained first and its rate measured on the test images; then the VAE was trained with the
# shapes' $\beta$, its KL measured, and $\beta$ corrected once with the slope of lecture 4's sweep
# (the rate grows about as $\beta^{-0.52}$: 240 bits at $\beta = 0.1$, 785 at 0.01):
# $\beta_\text{new} = 0.019 \times (\text{VAE bits} / \text{VQ-VAE bits})^{1/0.52}$. The shipped VAE is
# the second run. Those first runs, and a second seed of the digits pair, were not shipped;
# their numbers, measured on the same test images as here, are recorded in the shipped folders'
# `metrics.json` (`other_runs`), and the cell below reads them.

# %%
SHAPES_BETA = recipe("crossdata_shapes/vae").model["beta"]
# Lecture 4's sweep (same grid and width): its VAEs' KL at the end of training, nats -> bits
SWEEP_BITS = {beta: json.loads((CHECKPOINTS / f"vae_beta_sweep/beta_{beta}/metrics.json").read_text())
              ["final_train_logs"]["kl"] / math.log(2) for beta in ("0.1", "0.01")}
SLOPE = math.log10(SWEEP_BITS["0.01"] / SWEEP_BITS["0.1"])    # the rate grows as beta ** -SLOPE
claim(SHAPES_BETA == 0.019 and round(SLOPE, 2) == 0.52, quick=True,
      sentence="the shapes' beta = 0.019; the rate grows about as beta^-0.52",
      detail=f"beta {SHAPES_BETA:g}, slope {SLOPE:.3f}")
claim(abs(SWEEP_BITS["0.1"] - 240) < 5 and abs(SWEEP_BITS["0.01"] - 785) < 5,
      "lecture 4's sweep: about 240 bits at beta = 0.1, 785 at 0.01", quick=True,
      detail=", ".join(f"beta {b}: {v:.0f} bits" for b, v in SWEEP_BITS.items()))
MATCHED = 0.15                   # rates this close (relative to the VAE's) count as matched, as on the shapes
REAL = [name for name in SHIPPED if name != "shapes"]


def other_runs(name, kind):
    """The unshipped runs recorded beside a shipped checkpoint: {run: {bits_per_image, psnr, ...}}."""
    file = CHECKPOINTS / f"crossdata_{name}" / kind / "metrics.json"
    return json.loads(file.read_text()).get("other_runs", {}) if file.exists() else {}


# A PSNR gap below the spread between seeds ranks nothing. Normal mode measures that spread on the
# digits' second seed; quick mode trains no second seed and assumes 1 dB.
CLOSE_DB, SPREAD_FROM = 1.0, "assumed: quick mode trains no second seed"
if quick_mode():
    print("quick mode: the recorded runs belong to the shipped models, not to the ones trained here")
else:
    lines = []
    for name in REAL:
        first, target, beta = (other_runs(name, "vae")["first_run"], results[name]["numbers"]["bits"]["VQ-VAE"],
                               models[name]["vae"].beta)
        chosen = SHAPES_BETA * (first["bits_per_image"] / target) ** (1 / SLOPE)
        lines.append(f"- {name}: with $\\beta = {SHAPES_BETA:g}$ the VAE took {first['bits_per_image']:.0f} bits per image "
                     f"(PSNR {first['psnr']:.1f} dB) against the VQ-VAE's {target:.0f}: ${SHAPES_BETA:g} \\times "
                     f"({first['bits_per_image']:.0f} / {target:.0f})^{{1/{SLOPE:.2f}}} = {chosen:.4f}$, "
                     f"shipped as {beta:g}.")
        claim(abs(chosen / beta - 1) < 0.05, f"the {name} VAE's beta follows from its first run",
              detail=f"{chosen:.4f} against {beta:g}")
        claim(abs(target / first["bits_per_image"] - 1) > MATCHED,
              f"the shapes' beta did not match the rates on the {name}", detail=f"{first['bits_per_image']:.0f} against {target:.0f}")
    if "digits" in REAL:
        n = results["digits"]["numbers"]
        seed_runs = {"VAE": other_runs("digits", "vae")["seed_1"], "VQ-VAE": other_runs("digits", "vqvae")["seed_1"]}
        spread_db = {m: abs(run["psnr"] - n["psnr"][m]) for m, run in seed_runs.items()}
        kl_moved = abs(seed_runs["VAE"]["bits_per_image"] / n["bits"]["VAE"] - 1)
        CLOSE_DB = max(spread_db.values())
        SPREAD_FROM = "the most a model's PSNR moved between two seeds on the digits"
        lines.append("- digits, a second seed of both models (same settings): " + "; ".join(
            f"the {m} took {run['bits_per_image']:.0f} bits per image and reached {run['psnr']:.1f} dB "
            f"(shipped seed: {n['bits'][m]:.0f} bits, {n['psnr'][m]:.1f} dB)" for m, run in seed_runs.items())
            + f". Between two seeds the VAE's PSNR moved by {spread_db['VAE']:.1f} dB and its KL by {kl_moved:.0%} "
            f"at the same $\\beta$; the VQ-VAE's PSNR by {spread_db['VQ-VAE']:.1f} dB.")
    if lines:
        say("\n".join(lines))


def rates_apart(r):
    return abs(r["bits"]["VQ-VAE"] / r["bits"]["VAE"] - 1)


def dataset_verdict(name):
    """One dataset's matched-rate comparison, as a sentence rendered from its numbers."""
    r = results[name]["numbers"]
    bits, p = r["bits"], r["psnr"]
    ahead, behind = ("VQ-VAE", "VAE") if p["VQ-VAE"] > p["VAE"] else ("VAE", "VQ-VAE")
    margin = p[ahead] - p[behind]
    richer = max(bits, key=bits.get)
    text = (f"**{name}**: {bits['VAE']:.0f} bits per image for the VAE, {bits['VQ-VAE']:.0f} for the "
            f"VQ-VAE, {rates_apart(r):.0%} apart")
    text += (": matched. " if rates_apart(r) < MATCHED else
             f": not matched, the {richer} has the more bits. ")
    if margin < CLOSE_DB:
        text += (f"Their PSNRs are {p['VAE']:.1f} and {p['VQ-VAE']:.1f} dB, {margin:.2f} dB apart, less than "
                 f"the seed spread ({CLOSE_DB:.1f} dB, {SPREAD_FROM}): one run each does not rank them.")
    else:
        text += (f"The {ahead} reconstructs better, by {margin:.1f} dB ({p[ahead]:.1f} against "
                 f"{p[behind]:.1f} dB)" + ("" if rates_apart(r) < MATCHED else
                 f", {'with the extra bits' if ahead == richer else 'with fewer bits'}")
                 + f", {margin / CLOSE_DB:.1f} times the seed spread ({CLOSE_DB:.1f} dB, {SPREAD_FROM}).")
    if name == "shapes":
        text += (f" The shapes' other measures (the table of section 2) put the {ahead} ahead on "
                 f"{sum(v[2] == (ahead == 'VQ-VAE') for k, v in better.items() if k != 'test PSNR (dB)')} of "
                 f"{len(better) - 1}, also from one run each.")
    if "colour" in r and name != "shapes":     # the shapes: colour per shape, in their own table above
        c = r["colour"]
        text += (f" Colour: the VAE keeps {c['VAE']['kept']:.0%} of the test images' colourfulness, the "
                 f"VQ-VAE {c['VQ-VAE']['kept']:.0%} (mean colour error {c['VAE']['error']:.1f} and "
                 f"{c['VQ-VAE']['error']:.1f} on the 0-255 scale with the grey level taken out; grey "
                 f"reconstructions would score {c['VAE']['grey']:.1f}).")
    return text


def cell(r, key, model, fmt):
    return fmt.format(r[key][model]) if key in r else "n/a"


table = ["| dataset | VAE's beta | bits per image, VAE | VQ-VAE | apart | PSNR (dB), VAE | VQ-VAE "
         "| colourfulness kept, VAE | VQ-VAE |", "|" + " --- |" * 9]
for name, res in results.items():
    r = res["numbers"]
    table.append(f"| {name} | {models[name]['vae'].beta:g} | {r['bits']['VAE']:.0f} | {r['bits']['VQ-VAE']:.0f} | "
                 f"{rates_apart(r):.0%} | {r['psnr']['VAE']:.1f} | {r['psnr']['VQ-VAE']:.1f} | "
                 + " | ".join(cell(r, "colour", m, "{0[kept]:.0%}") for m in ("VAE", "VQ-VAE")) + " |")
say("\n".join(table) + "\n\n(colourfulness: per shape on the shapes, per pixel on colour photographs; "
    "the digits are grey)\n\n" + "\n\n".join(dataset_verdict(name) for name in results),
    (all(rates_apart(results[name]["numbers"]) < MATCHED for name in SHIPPED),
     "the rates match within 15% on every dataset with a shipped pair"))

if not quick_mode() and "digits" in REAL:
    n, seed_vae, seed_vq = results["digits"]["numbers"], seed_runs["VAE"], seed_runs["VQ-VAE"]
    gaps = (n["psnr"]["VAE"] - n["psnr"]["VQ-VAE"], seed_vae["psnr"] - seed_vq["psnr"])
    fewer = 1 - seed_vae["bits_per_image"] / seed_vq["bits_per_image"]
    digit_bits = 64 * math.log2(17)       # 8 x 8 pixels of 17 grey levels, before the scaling to 32 x 32
    say(f"""On the digits the VAE is ahead with both seeds: by {gaps[0]:.1f} dB at matched rates, and by
{gaps[1]:.1f} dB with the second seed, where it spent {fewer:.0%} fewer bits
than that seed's VQ-VAE. So at this rate the VAE reconstructs the digits at least as well as the VQ-VAE, by a
margin one run cannot pin down. Neither is short of bits here: a digit holds at most {digit_bits:.0f} bits
(8 x 8 pixels of 17 grey levels), {digit_bits / min(n['bits'].values()):.0%} of the smaller of the two rates.""",
        (min(gaps) > 0, "the VAE is ahead with both seeds"),
        (gaps[0] < CLOSE_DB, "at matched rates by less than the seed spread: level within it"),
        (seed_vae["bits_per_image"] < seed_vq["bits_per_image"], "with fewer bits in the second seed"),
        (min(n["bits"].values()) > 1.5 * digit_bits, "neither model is short of bits on the digits"))

if not quick_mode() and "patches" in REAL:
    n, first = results["patches"]["numbers"], other_runs("patches", "vae")["first_run"]
    lead, more = n["psnr"]["VQ-VAE"] - n["psnr"]["VAE"], first["bits_per_image"] / n["bits"]["VQ-VAE"] - 1
    say(f"""On the patches the VQ-VAE is ahead by {lead:.1f} dB, {lead / CLOSE_DB:.1f} times the largest PSNR
difference between two seeds on the digits, and the rate does not explain it: the VAE's
first run, with {first['bits_per_image']:.0f} bits per image ({more:.0%} more than the VQ-VAE's
{n['bits']['VQ-VAE']:.0f}), reached {first['psnr']:.1f} dB, about as much as the shipped VAE's {n['psnr']['VAE']:.1f} dB.""",
        (lead > 2 * CLOSE_DB, "on the patches the VQ-VAE's lead is more than twice the seed spread"),
        (abs(first["psnr"] - n["psnr"]["VAE"]) < 0.5, "about as much as the shipped VAE"),
        (first["bits_per_image"] > n["bits"]["VQ-VAE"] and n["psnr"]["VQ-VAE"] - first["psnr"] > 1,
         "more bits than the VQ-VAE do not close the gap for the VAE"))
    shapes_psnr = results["shapes"]["numbers"]["psnr"]
    claim(2 * len(wins) < len(better) and 0 < shapes_psnr["VAE"] - shapes_psnr["VQ-VAE"] < CLOSE_DB,
          "on the shapes the VAE leads on most measures, its PSNR lead within the seed spread (summary)",
          detail=f"{len(better) - len(wins)} of {len(better)} measures; PSNR lead "
                 f"{shapes_psnr['VAE'] - shapes_psnr['VQ-VAE']:.2f} dB, spread {CLOSE_DB:.2f} dB")

# %% [markdown]
# **Which colours come back.** The colourfulness kept says how much colour the reconstructions
# have, not whether it is the right one; the colour error says that. The patches' split makes
# the difference visible: the test photographs are a cat and a rocket against a blue sky, and
# the training photographs (an astronaut, coffee, a stained tissue sample, a motorcycle) are
# warm-coloured. Here are the rocket's tiles alone.

# %%
if "patches" in results:
    from dlstudio_lite.realdata import ALL_PHOTOS

    def blue_over_red(img):
        """Blue minus red channel, averaged over the pixels of ``img`` (B, 3, H, W), 0-255 units:
        above 0 bluish, below 0 reddish."""
        return float(((img[:, 2] - img[:, 0]) * 127.5).mean())

    def bluish(img):
        """Share of the pixels whose blue exceeds their red by more than 30 levels."""
        return float(((img[:, 2] - img[:, 0]) * 127.5 > 30).float().mean())

    xp, recon_p, c = models["patches"]["x"], results["patches"]["recon"], results["patches"]["numbers"]["colour"]
    rocket = models["patches"]["y"] == ALL_PHOTOS.index("rocket")
    some = torch.linspace(0, int(rocket.sum()) - 1, 8).round().long()
    show_side_by_side({"the rocket's test tiles": xp[rocket][some],
                       **{f"{k} reconstruction": v[rocket][some] for k, v in recon_p.items()}},
                      n=8, title="patches: the rocket's tiles")
    plt.show()
    train_bluish = bluish(splits("patches")[0].tensors[0])
    sky = {"test tiles": blue_over_red(xp[rocket]), **{k: blue_over_red(v[rocket]) for k, v in recon_p.items()}}
    by_photo = {k: (float(psnr(v[rocket], xp[rocket])), float(psnr(v[~rocket], xp[~rocket])))   # (rocket, cat)
                for k, v in recon_p.items()}
    say(f"""Bluish pixels (blue above red by more than 30 levels): {bluish(xp[rocket]):.0%} in the rocket's
tiles ({int(rocket.sum())} of the {len(xp)} test tiles evaluated here), {train_bluish:.1%} in the training patches. On the rocket's tiles blue
exceeds red by {sky['test tiles']:.0f} levels on average; in the reconstructions by {sky['VAE']:.0f} (VAE)
and {sky['VQ-VAE']:.0f} (VQ-VAE). Neither model returns the blue sky: the VAE paints it reddish brown,
the VQ-VAE a dark, nearly neutral grey. PSNR on the rocket's tiles: {by_photo['VAE'][0]:.1f} dB (VAE) and
{by_photo['VQ-VAE'][0]:.1f} dB (VQ-VAE), lower for both than on the cat's: {by_photo['VAE'][1]:.1f} and
{by_photo['VQ-VAE'][1]:.1f} dB.
So the VAE's high colourfulness kept ({c['VAE']['kept']:.0%}) is largely colour in the wrong place: its colour
error, {c['VAE']['error']:.1f}, is {'no better than' if c['VAE']['error'] >= c['VAE']['grey'] else 'barely below'}
that of grey
reconstructions ({c['VAE']['grey']:.1f}); the VQ-VAE's muted colours ({c['VQ-VAE']['kept']:.0%} kept) are closer
to the truth ({c['VQ-VAE']['error']:.1f}).""",
        (bluish(xp[rocket]) > 0.5 and train_bluish < 0.05,
         "the rocket's tiles are mostly bluish, the training patches almost never"),
        (max(sky["VAE"], sky["VQ-VAE"]) < 0 < sky["test tiles"], "neither model returns the blue sky"),
        (sky["VAE"] < -15 and abs(sky["VQ-VAE"]) < 15, "the VAE paints it reddish, the VQ-VAE nearly neutral"),
        (c["VAE"]["error"] > 0.9 * c["VAE"]["grey"] and c["VAE"]["kept"] > c["VQ-VAE"]["kept"],
         "the VAE's larger colourfulness is largely colour in the wrong place"),
        (c["VQ-VAE"]["error"] < c["VAE"]["error"], "the VQ-VAE's colours are closer to the truth"),
        (all(a < b for a, b in by_photo.values()), "both reconstruct the rocket worse than the cat"))

# %% [markdown]
# A model can only return colours its training images contain. A split by photograph shows this
# (a random split of tiles would hide it, since neighbouring tiles of one sky would sit on both
# sides); a course-sized fix is training data with the colours the test images need.
#
# The samples in the grids above are neither digits nor photographs: without a learned prior,
# both models' samples are stroke fragments on the digits and blotches of the training
# photographs' colours on the patches, as they are blobs on the shapes.
#
# (In quick mode every model is trained for a few steps and the numbers mean nothing.)
#
# ## 3. The students' table, with measurements
#
# The slides compare the two models in a table of statements. Below, each statement that can
# be measured gets the numbers from above, per dataset. A dataset that is not on this machine
# keeps empty cells. The slides themselves report **no numbers** for any dataset, only the
# settings and pictures, quoted in the second table; we do not make up numbers for them.
#
# How to read the first table: each row of the slides becomes two lines, one per model, with
# what the slides say and what we measure for it; then one column per dataset (empty: the
# dataset is not on this machine; n/a: the measure does not apply, such as the shapes' feature
# network on digits). In the last row, a VAE channel with a KL near 0 carries nothing about the
# image (posterior collapse), so we count the channels above 0.5 nats; for the VQ-VAE, the codes
# the test images use and their perplexity ($2^H$, the number of equally used codes with the
# same entropy).

# %%
ALL = ["shapes", "digits", "patches", "mnist", "cifar10", "celeba"] + [n for n in results if n.startswith("folder:")]


def cells(fn):
    return " | ".join(fn(results[n]["numbers"]) if n in results else "" for n in ALL)


rows = [
    ("Latent space", "Gaussian distribution (continuous)", "Discrete codebook", "bits per image",
     lambda m: lambda r: f"{r['bits'][m]:.0f}"),
    ("Reconstruction", "Generally good, but blurry", "High fidelity due to discrete latent space",
     "test PSNR (dB)", lambda m: lambda r: f"{r['psnr'][m]:.1f}"),
    ("Reconstruction", "", "", "FD of reconstructions (shapes features)",
     lambda m: lambda r: f"{r['quality'][f'recon {m}']['fd']:.0f}" if "quality" in r else "n/a"),
    ("Reconstruction", "", "", "colourfulness kept (shapes: per shape; colour photos: per pixel)",
     lambda m: lambda r: f"{r['colour'][m]['kept']:.0%}" if "colour" in r else "n/a"),
    ("Training stability", "Can suffer from posterior collapse", "Typically more stable",
     "latent channels with KL > 0.5 nats / codes in use",
     lambda m: lambda r: r["in_use"][m]),
]
lines = ["| slides' row | model | the slides say | measured | " + " | ".join(ALL) + " |",
         "|" + " --- |" * (4 + len(ALL))]
for row, vae_says, vq_says, what, fn in rows:
    for model, says in (("VAE", vae_says), ("VQ-VAE", vq_says)):
        lines.append(f"| {row} | {model} | {says} | {what} | {cells(fn(model))} |")
display(Markdown("\n".join(lines)))

display(Markdown(f"""
**What the slides report per dataset** (quoted; their settings, not ours: batch 128; VAE with a
256-dimensional flat latent, lr 5e-5; VQ-VAE with 100 codes of dimension 128, beta 0.1, lr 2e-5):

| dataset | VAE | VQ-VAE | numbers in the slides |
| --- | --- | --- | --- |
| MNIST | 10 epochs, reconstructions shown | 10 epochs, reconstructions and interpolation shown | none |
| CIFAR-10 | 100 epochs, reconstructions and samples shown | 30 epochs, reconstructions and interpolation shown | none |
| CelebA | not shown | 10 epochs, reconstructions and interpolation shown | none |

Derived from those settings (our arithmetic, not the slides'): 100 codes give at most
$\\log_2 100 = {math.log2(100):.1f}$ bits per cell; their final encoder halves the image twice, so a 32 x 32
CIFAR-10 image becomes an 8 x 8 grid, at most {64 * math.log2(100):.0f} bits per image, the same grid as ours.
"""))

# %% [markdown]
# "Blurry" versus "high fidelity" is not a property of the two model families alone: it
# depends on the rate each is given and on how long it trains. The table shows which model
# reconstructs better *at this rate and budget*; to see how the answer moves, change the rate
# of both, for example with `dlstudio-lite train --recipe crossdata_shapes/vae --beta 0.1
# --out data/checkpoints/crossdata_shapes/vae` and `dlstudio-lite train --recipe
# crossdata_shapes/vqvae --num-codes 64 --out data/checkpoints/crossdata_shapes/vqvae` (the
# same 2,000 steps each; `git checkout data/checkpoints` brings the shipped pair back), and
# run this notebook again to fill the table. Lecture 5 compares the two at a higher
# rate on 64 x 64 shapes.
#
# ## 4. Pitfall: normalisation constants (black blotches)
#
# The students first wrote `transforms.Normalize((0.4, 0.4, 0.4), (0.4, 0.4, 0.4))` and got
# "shapeless black spots" in their images. `Normalize` computes $(p - \text{mean}) / \text{std}$
# for a pixel $p \in [0, 1]$:
#
# - mean 0.5, std 0.5: $[0, 1] \to [-1, 1]$, the course's range;
# - mean 0.4, std 0.4: $[0, 1] \to [-1, 1.5]$.
#
# A decoder has an output range: $[-1, 1]$ with a `tanh` (or the course's clamp), $[0, 1]$
# with the `sigmoid` the students' VAE decoder ends in. Whatever of the data lies outside it
# can never be reproduced, however long one trains: the best a model can do is to clip. Below,
# a photograph (matplotlib's sample image, a face like CelebA's) and a shapes image go through
# four pipelines, each showing the **best possible output**: the normalised image clipped to
# the decoder's range, mapped back for display.

# %%
from matplotlib.cbook import get_sample_data  # noqa: E402  (matplotlib's own sample photo)

photo = torch.tensor(plt.imread(get_sample_data("grace_hopper.jpg"))).permute(2, 0, 1).float() / 255
photo = F.interpolate(photo[None], size=(150, 128), mode="bilinear", antialias=True)[0]
shape_img = (models["shapes"]["x"][0] + 1) / 2
images01 = {"photo": photo, "shapes": shape_img}            # (3, H, W) in [0, 1]

PIPELINES = {  # title: (mean = std, decoder's output range, how the output is shown)
    "0.5/0.5, tanh output\n(the course)": (0.5, (-1.0, 1.0), "undo the normalisation"),
    "0.4/0.4, tanh output": (0.4, (-1.0, 1.0), "undo the normalisation"),
    "0.4/0.4, sigmoid output\n(the students' decoder)": (0.4, (0.0, 1.0), "undo the normalisation"),
    "0.4/0.4, sigmoid output,\nshown as it comes": (0.4, (0.0, 1.0), "clip to [0, 1]"),
}


def best_output(p, mean_std, out_range, shown):
    y = (p - mean_std) / mean_std                  # what the model is trained to reproduce
    y_hat = y.clamp(*out_range)                    # the closest output the decoder can produce
    outside = float((y != y_hat).float().mean())
    display_img = y_hat * mean_std + mean_std if shown.startswith("undo") else y_hat
    return display_img.clamp(0, 1), outside


fig, axes = plt.subplots(2, 1 + len(PIPELINES), figsize=(15, 6.6))
for row, (label, p) in enumerate(images01.items()):
    axes[row, 0].imshow(p.permute(1, 2, 0), interpolation="nearest")
    axes[row, 0].set_title(f"{label}: original")
    for col, (title, (ms, rng, shown)) in enumerate(PIPELINES.items(), start=1):
        img, outside = best_output(p, ms, rng, shown)
        axes[row, col].imshow(img.permute(1, 2, 0), interpolation="nearest")
        axes[row, col].set_title(f"{title}\n{outside:.0%} of values out of reach", fontsize=9)
for ax in axes.flat:
    ax.set_axis_off()
plt.tight_layout()
plt.show()

# %%
fig, ax = plt.subplots(figsize=(8, 3))
p = photo.flatten()
ax.hist([((p - 0.5) / 0.5).numpy(), ((p - 0.4) / 0.4).numpy()], bins=60,
        label=["mean/std 0.5/0.5", "mean/std 0.4/0.4"], color=["tab:green", "tab:red"], alpha=0.7)
ax.axvspan(-1, 1, color="grey", alpha=0.12, label="tanh output range [-1, 1]")
ax.axvline(0, color="k", ls=":", lw=1, label="sigmoid output starts at 0")
ax.set(xlabel="normalised pixel value", ylabel="pixels", title="the photo's pixels after Normalize")
ax.legend(fontsize=8)
plt.show()

best = {(label, title): best_output(p, *PIPELINES[title]) for label, p in images01.items() for title in PIPELINES}
course_pipe, tanh04, sigmoid04, raw04 = PIPELINES


def turned_black(label, title):
    """Share of the pixels of image `label` that are not black but come out black."""
    img, original = best[(label, title)][0], images01[label]
    return float(((img.amax(0) < 0.02) & (original.amax(0) >= 0.02)).float().mean())


claim(all(best[(label, course_pipe)][1] == 0 for label in images01),
      "With 0.5 / 0.5 and an output in [-1, 1] nothing is out of reach", quick=True)
claim(turned_black("photo", tanh04) == 0, "with 0.4 / 0.4 and a tanh nothing turns black", quick=True)
claim(bool((best[("photo", raw04)][0][photo < 0.4] == 0).all()),
      "shown as they come out of the network, values darker than 0.4 are pure black", quick=True)
say(f"Pixels that turn black in the last pipeline: {turned_black('photo', raw04):.0%} of the photo "
    f"(none with the tanh), {turned_black('shapes', raw04):.0%} of the shapes image.",
    (turned_black("shapes", raw04) < turned_black("photo", raw04), "Shapes images suffer less"), quick=True)

# %% [markdown]
# What the pictures show:
#
# - With 0.5 / 0.5 and an output in $[-1, 1]$ nothing is out of reach: the image comes back.
# - With 0.4 / 0.4 and a `tanh`, the data reaches 1.5. Every value brighter than 0.8 (the
#   red histogram right of 1) is clipped: the highlights (the white collar, the flag's white
#   stars and stripes) come back a little duller, but nothing turns black.
# - With 0.4 / 0.4 and the students' `sigmoid`, every pixel darker than 0.4 is out of reach as
#   well (the sigmoid cannot go below 0). Mapped back correctly those regions are a flat grey;
#   **shown as they come out of the network** (a `save_image` or `imshow` of the raw output,
#   which clips to $[0, 1]$), they are pure black: large shapeless black regions wherever the
#   picture is darker than 0.4 (the jacket, the cap, the shadows), while the bright colours
#   saturate. That is one pipeline that reproduces the black blotches of the slides; the
#   slides do not show their display code, so we cannot tell which one they used.
#
# The rule behind the fix: the data range after `Normalize`, the decoder's output range and the
# inverse used for display must agree. The course normalises with 0.5 / 0.5 everywhere
# (`dlstudio_lite.data`) and shows images with `denormalize`, the inverse of exactly that.
# Shapes images suffer less because their colours are saturated and the background is black
# anyway; photographs have large dark regions. See also [errata B12](../docs/ERRATA.md#b12).
#
# ## 5. Pitfall: colour jitter for a reconstruction model
#
# `ColorJitter` randomly changes brightness, contrast, saturation and hue. For a classifier it
# is a good augmentation: the label "cat" does not change with the colour. An autoencoder's
# label is the image itself, so with the jitter applied to the training image, **the target
# changes colour too**. Here is one training image as the model sees it in eight epochs:

# %%
from torchvision.transforms import ColorJitter  # noqa: E402

jitter = ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1)
torch.manual_seed(0)
train_shapes = SHAPES.splits()[0]
one = train_shapes.tensors(1)
jittered_one = torch.cat([one] + [jitter((one + 1) / 2) * 2 - 1 for _ in range(7)])
show_images(jittered_one, nrow=8, scale=2,
            title="one training image: original, then seven jittered copies (input = target)")
plt.show()

# %% [markdown]
# Contrast jitter mixes the image with its mean grey, so the background is no longer exactly
# black (a dark grey, hard to see in the picture; the count below measures it), and brightness
# and saturation jitter change the shapes' colours to ones the real data never has.
# The model is now asked to reproduce a wider set of images than the test set holds. The
# course's sample-quality measure sees how far the training data moved: the FD between real
# test images and jittered training images, against clean training images.

# %%
n_q = N_EVAL
test_x = models["shapes"]["x"]
clean_train = train_shapes.tensors(n_q)
jittered_train = torch.stack([jitter((img + 1) / 2) * 2 - 1 for img in clean_train])
shift = {"clean train": quality_report(test_x, clean_train), "jittered train": quality_report(test_x, jittered_train)}
background = (test_x.amax(1) < -0.99).float().mean()
bg_after = (jittered_train.amax(1) < -0.99).float().mean()
for k, v in shift.items():
    print(f"{k:15s} FD to the test images {v['fd']:7.1f}   valid-shape rate {v['valid_shape_rate']:.0%}")
print(f"pixels that are pure black: {float(background):.0%} of the test images, "
      f"{float(bg_after):.0%} of the jittered training images")
claim(bg_after < 0.9 * background, "with contrast jitter the background is no longer exactly black",
      detail=f"pure black {float(background):.0%} -> {float(bg_after):.0%}")
claim(shift["jittered train"]["fd"] > 2 * shift["clean train"]["fd"],
      "the feature distance sees the jittered training data move away from the test images",
      detail=f"FD clean {shift['clean train']['fd']:.1f}, jittered {shift['jittered train']['fd']:.1f}")

# %% [markdown]
# Where does that hurt? Every part of a model that stores colours spends capacity on colours
# the test images never have. The cleanest place to see it is a codebook, the subject of
# lecture 1: learn a palette of 16 colours by k-means (the VQ-VAE's `kmeans_init`) from the
# pixels of clean training images and, separately, of jittered ones, then redraw the clean
# test images with each palette.

# %%
def pixels(x):
    return x.permute(0, 2, 3, 1).reshape(-1, 3)     # BCHW -> BHWC -> one row per pixel


palettes = {}
for label, data in {"clean": clean_train, "jittered": jittered_train}.items():
    torch.manual_seed(0)
    palettes[label] = kmeans(pixels(data), 16, iters=20)

redrawn = {label: pal[nearest_codes(pixels(test_x), pal)].view(test_x.shape[0], *test_x.shape[2:], 3)
           .permute(0, 3, 1, 2) for label, pal in palettes.items()}
fig, axes = plt.subplots(1, 2, figsize=(10, 1.2))
for ax, (label, pal) in zip(axes, palettes.items()):
    ax.imshow(((pal + 1) / 2).clamp(0, 1)[None], interpolation="nearest")
    ax.set_title(f"16-colour palette learned from {label} training pixels", fontsize=9)
    ax.set_axis_off()
plt.show()
show_side_by_side({"clean test images": test_x,
                   **{f"redrawn with the {k} palette ({float(psnr(v, test_x)):.1f} dB)": v
                      for k, v in redrawn.items()}}, n=8)
plt.show()


def near_black(palette):
    """Palette entries that are near-black (0-255: brightest channel below 20): the background's
    black and, after the jitter, its dark greys."""
    return int(((palette + 1) * 127.5).max(1).values.lt(20).sum())


def dim(palette):
    """Palette entries that are dim (0-255: brightest channel from 20 to 149), a colour no shape has."""
    top = ((palette + 1) * 127.5).max(1).values
    return int(((top >= 20) & (top < 150)).sum())


def dull(palette):
    """Palette entries that are dim or greyish (0-255: brightest channel below 150, or the
    channels within 40 of each other), the near-black entries (`near_black`) left out."""
    c = (palette + 1) * 127.5
    top, spread = c.max(1).values, c.max(1).values - c.min(1).values
    return int(((top >= 20) & ((top < 150) | (spread < 40))).sum())


palette_psnr = {k: float(psnr(v, test_x)) for k, v in redrawn.items()}
shape_px = (pixels(test_x) + 1) * 127.5                                  # the test images' pixels, 0-255
shape_px = shape_px[shape_px.max(1).values >= 20]                        # ... those of the shapes
top, chroma_px = shape_px.max(1).values, shape_px.max(1).values - shape_px.min(1).values
dim_share, grey_share = float((top < 150).float().mean()), float(((top >= 150) & (chroma_px < 40)).float().mean())
say(f"Dim or greyish entries: {dull(palettes['jittered'])} of 16 in the jittered palette, "
    f"{dull(palettes['clean'])} in the clean one; near-black entries besides those (the background's black, after the jitter also its dark greys): "
    f"{near_black(palettes['jittered'])} in the jittered palette, {near_black(palettes['clean'])} in the "
    f"clean one. The test images redrawn with them: "
    f"{palette_psnr['jittered']:.1f} dB against {palette_psnr['clean']:.1f} dB. Of the test shapes' pixels, "
    f"{dim_share:.0%} are dim (brightest channel below 150) and {grey_share:.0%} greyish; of the "
    f"palettes' entries, {dim(palettes['jittered'])} (jittered) and {dim(palettes['clean'])} (clean) are dim.",
    (dull(palettes["jittered"]) > dull(palettes["clean"]), "the jittered palette spends codes on greys and dim colours"),
    (palette_psnr["jittered"] < palette_psnr["clean"], "the true shape colours come back further off"),
    (dim_share < 0.005 and grey_share < 0.5, "no shape is dim, and most shape pixels are not greyish"),
    (dim(palettes["jittered"]) > dim(palettes["clean"]), "the jittered palette holds dim colours that no shape has"))

# %% [markdown]
# The jittered palette spends more of its codes on greys and dim colours. No shape of the test
# images is dim (one channel of a shape's colour is always 170 or above), and only a minority of
# their pixels are greyish; the clean palette spends its codes accordingly. With the jittered
# palette, the true shape colours come back further off (the numbers above). A VQ-VAE's codebook and a VAE's decoder are richer than a palette, but
# the budget argument is the same: capacity that learns jittered colours is missing for the
# real ones. Samples suffer in the same way: a generative model trained on jittered images
# learns to *generate* jittered images. Augment an autoencoder with transformations that keep
# the images inside the distribution you care about (flips for the shapes), or apply colour
# changes to the input only, when the task is to undo them.
#
# ## 6. Pitfall: BCHW versus BHWC
#
# PyTorch stores images as `(C, H, W)` (a batch: `(B, C, H, W)`), matplotlib wants `(H, W, C)`.
# `imshow` refuses a `(3, H, W)` array outright, which is the lucky case. A `reshape` to
# `(H, W, 3)` is accepted without complaint and produces nonsense, because reshaping keeps the
# order of the numbers in memory: all red values first, then all green, then all blue.

# %%
img = models["shapes"]["x"][0]                        # (3, H, W) in [-1, 1]
refused = False
try:
    plt.imshow(img)
except TypeError as err:
    refused = True
    print("plt.imshow of a (C, H, W) tensor:", err)
plt.close("all")
claim(refused, "imshow refuses a (3, H, W) array outright", quick=True)

shown = {"permute(1, 2, 0): right": img.permute(1, 2, 0),
         "reshape(H, W, 3): wrong": img.reshape(img.shape[1], img.shape[2], 3),
         "transpose(0, 2): H and W swapped": img.transpose(0, 2)}
fig, axes = plt.subplots(1, 3, figsize=(9, 3.2))
for ax, (title, hwc) in zip(axes, shown.items()):
    ax.imshow(((hwc + 1) / 2).clamp(0, 1), interpolation="nearest")
    ax.set_title(title, fontsize=10)
    ax.set_axis_off()
plt.show()
h, w = img.shape[1:]
wrong = shown["reshape(H, W, 3): wrong"]
claim(torch.equal(wrong.flatten()[:h * w], img[0].flatten()), quick=True,
      sentence="the reshaped image is cut into three bands, one per colour channel (the first third holds the red values)")
claim(all(torch.equal(wrong[r].flatten(), img[0, 3 * r:3 * r + 3].flatten()) for r in range(h // 3)), quick=True,
      sentence="each row of a band holds three rows of its channel side by side: three copies, a third as wide "
               "and a third as tall, and a pixel's three colours are three neighbouring values of one channel")
claim(torch.equal(shown["transpose(0, 2): H and W swapped"], img.permute(1, 2, 0).transpose(0, 1)), quick=True,
      sentence="transpose(0, 2) gives the right colours but mirrors the image along its diagonal")

# %% [markdown]
# The reshaped image is cut into three bands, one per colour channel (the top band holds the
# red values, the middle one the green, the bottom one the blue), and each band holds three
# squashed copies of the picture side by side:
# every row of the band is three rows of that channel laid end to end, so each copy is a third
# as wide and a third as tall (the first copy has rows 0, 3, 6, ..., the second rows 1, 4, 7,
# ...), and a pixel's three colours are three neighbouring values of one channel. `transpose(0, 2)` gives the right
# colours but mirrors the image along its diagonal, an error easy to miss on shapes. The
# same mistake inside a VQ-VAE (flattening `(B, D, h, w)` to rows without moving the channels
# last) quantizes vectors that do not exist; lecture 5, section 6, shows it on a trained model
# ([errata B2](../docs/ERRATA.md#b2)). The students report the same lesson: after they
# moved the encoder output to BHWC before quantizing, their reconstructions worked.
#
# ## 7. Interpolating in latent space
#
# The slides show interpolations for their VQ-VAE. Between two test images $a$ and $b$:
#
# - VAE: decode $(1 - t)\,\mu_a + t\,\mu_b$, a straight line between the posterior means;
# - VQ-VAE: interpolate the encoder outputs $z_e$ and **quantize** each point, so the decoder
#   only ever sees codebook vectors (decoding the unquantized mix would hand it inputs it
#   was never trained on).

# %%
a, b = models["shapes"]["x"][0:1], models["shapes"]["x"][1:2]
ts = torch.linspace(0, 1, 8)
with torch.no_grad():
    vae, vq = models["shapes"]["vae"], models["shapes"]["vqvae"]
    mu_a, mu_b = vae.encode(a)[0], vae.encode(b)[0]
    vae_path = torch.cat([vae.decode((1 - t) * mu_a + t * mu_b) for t in ts]).clamp(-1, 1)
    z_a, z_b = vq.encode(a), vq.encode(b)
    vq_path = torch.cat([vq.decode(vq.quantize((1 - t) * z_a + t * z_b).quantized) for t in ts]).clamp(-1, 1)
    codes_a, codes_b = vq.quantizer.encode_indices(z_a)[0], vq.quantizer.encode_indices(z_b)[0]
    path_codes = [vq.quantizer.encode_indices((1 - t) * z_a + t * z_b)[0] for t in ts]
show_side_by_side({"VAE: straight line between posterior means": vae_path,
                   "VQ-VAE: straight line between encoder outputs, quantized": vq_path}, n=8)
plt.show()
in_a, in_b = a[0].amax(0) > -0.9, b[0].amax(0) > -0.9       # the pixels of a's and b's shapes
patch = a.shape[-1] // codes_a.shape[-1]                     # a grid cell covers patch x patch pixels
under = F.max_pool2d((in_a | in_b)[None, None].float(), patch)[0, 0].bool()   # cells under a shape of a or b
whose = [(int((c == codes_a)[under].sum()), int((c == codes_b)[under].sum()),
          int(((c != codes_a) & (c != codes_b))[under].sum())) for c in path_codes]
print(f"VQ-VAE, the {int(under.sum())} grid cells under a's or b's shapes, along the path "
      "(cells with a's code / b's code / another code):", ", ".join("/".join(map(str, n)) for n in whose))
elsewhere = ~(in_a | in_b)
light = lambda path, mask: [float(((f + 1) / 2)[:, mask].mean()) for f in path]  # noqa: E731
fades = {name: (light(path, in_a), light(path, in_b), light(path, elsewhere))
         for name, path in (("VAE", vae_path), ("VQ-VAE", vq_path))}
say("Mean brightness (0-1) along each path, first and last frame, where $a$'s shapes are / where "
    "$b$'s are / elsewhere (the brightest frame): "
    + "; ".join(f"{k}: {fa[0]:.2f} to {fa[-1]:.2f} / {fb[0]:.2f} to {fb[-1]:.2f} / at most {max(fe):.2f}"
                for k, (fa, fb, fe) in fades.items()),
    (all(fa[-1] < 0.5 * fa[0] and fb[-1] > 2 * fb[0] and max(fe) < 0.1 for fa, fb, fe in fades.values()),
     "both paths fade a's shapes out where they are and b's in where they are, with little light elsewhere"),
    (whose[0][0] == whose[-1][1] == int(under.sum()) and all(2 * n[2] > sum(n) for n in whose[1:-1]),
     "on the VQ-VAE's path, in every frame between the first and the last, most cells under the shapes "
     "hold a code of neither image"),
    (2 * whose[1][0] < sum(whose[1]) and 2 * whose[-2][1] < sum(whose[-2]),
     "the VQ-VAE's path leaves a's codes early and reaches b's only at the end"))

# %% [markdown]
# A straight line in these latents mixes the two pictures rather than moving objects: along
# both paths $a$'s shapes fade out where they are and $b$'s fade in where they are, with
# little light anywhere else (the numbers above). The VAE's mix is a smooth blend of the
# decoded means. The VQ-VAE's path does not swap $a$'s codes for $b$'s cell by cell: in the
# cells under the shapes (the printed counts) it leaves $a$'s codes early and reaches $b$'s
# only at the end, and in the frames between, most of those cells hold other codebook
# entries, belonging to neither image: its frames in between are decoded from those.
#
# ## The other points of the slides, in the course
#
# The students also tried other optimizers (Adam, AdamW, RMSprop, SGD), learning-rate
# schedules (StepLR, ExponentialLR, CosineAnnealingLR), mixed precision and residual blocks.
# All of them are options here rather than code to write: `dlstudio-lite train ... --optimizer
# rmsprop --scheduler exponentiallr --scheduler-kwargs gamma=0.999 --amp bf16` (mixed precision
# pays off on a GPU; `auto` leaves it off on a CPU), and the course's encoder and decoder are
# built from residual SkipBlocks (lecture 3).
#
# ## Summary
#
# - Compare a VAE and a VQ-VAE at the same latent grid **and** the same rate: bits per image
#   are the VAE's KL in bits and the VQ-VAE's code entropy times the number of grid cells
#   (`dlstudio_lite.latent_rate`).
# - The slides' statements ("blurry" against "high fidelity") are claims about a rate and a
#   training budget; the table above replaces them by measurements on the datasets you have,
#   and leaves empty what was not measured. The answer depends on the data, and with one run per
#   model only a gap larger than the spread between two seeds ranks the two: at matched rates
#   (with $\beta$ re-chosen per dataset) the VQ-VAE is ahead on the photograph patches by more
#   than twice that spread, and giving the VAE more bits did not close the gap; on the digits the
#   two are level within it, the VAE ahead with both seeds; on the shapes the VAE leads on most measures, but its PSNR lead is
#   within it.
# - A model returns the colours its training images hold: neither model gives back the blue sky
#   of a test photograph when the training photographs are warm-coloured.
# - `Normalize(0.4, 0.4)` sends pixels to $[-1, 1.5]$. Whatever lies outside the decoder's output
#   range is lost; with a sigmoid output shown without its inverse, everything darker than 0.4
#   turns black.
# - Colour jitter on an autoencoder changes the target as well as the input, moves the training
#   data away from the test data, and spends capacity (here: palette entries) on colours that
#   never occur.
# - `(C, H, W)` to `(H, W, C)` is a `permute`, never a `reshape`.
# - Straight lines in both latents cross-fade; on the VQ-VAE's path the cells under the shapes
#   pass through codes of neither image on the way from $a$'s codes to $b$'s.
#
# ## Questions to think about
#
# 1. The VAE's rate is set by $\beta$, the VQ-VAE's by $K$ and the grid. If you wanted the two
#    rates equal to within 5%, which knob would you turn, and how would you find its value
#    without training many models?
# 2. The VQ-VAE's rate here counts each code with its frequency but ignores which codes tend to
#    sit next to each other. Would a prior that knows the neighbours (lecture 6) make the rate
#    larger or smaller? What would the VAE's counterpart be?
# 3. The students' decoder ended in a sigmoid. With the correct 0.5 / 0.5 normalisation, what
#    would that sigmoid have cost them, and what would you put there instead?
# 4. Name an augmentation that helps an autoencoder on the shapes, and one that hurts it. How
#    would you check your answer with the measures of this notebook?

# %%
print(summary())
