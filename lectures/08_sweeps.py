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
# # Appendix 8: hyperparameter sweeps of a VQ-VAE
#
# One of the student reports behind this course trained a VQ-VAE on CelebA faces
# (64x64) and varied three settings: the commitment weight $\beta$ (0.25, 0.75, 1.25,
# 1.75), the learning rate ($10^{-3}$, $10^{-4}$, $10^{-5}$) and the codebook size (128,
# 256, 512 codes). Each run lasted 10,000 iterations, and the runs were compared by their
# loss and perplexity curves and by how many iterations the perplexity needed to reach its
# best value. This appendix repeats the experiment on the course's shapes, with the
# course's `dlstudio-lite sweep` command, and checks the report's conclusions against the
# measured curves.
#
# **What you will learn**
#
# - what a sweep costs: a full grid against one factor at a time around a base point;
# - how to run one with `dlstudio-lite sweep` (in parallel, restartable, or as a job array
#   on a cluster) and what its table holds;
# - how to read loss and perplexity curves side by side, and why "iterations to reach the
#   best perplexity" needs care;
# - which of the report's three conclusions hold on our data, which do not, and what a
#   short, cheap sweep can and cannot tell you.

# %%
# %matplotlib inline

import json
import shlex
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from dlstudio_lite import CHECKPOINTS, quick_mode, read_table
from dlstudio_lite.cli import main as dlstudio_lite

print("quick mode:", quick_mode())

# %% [markdown]
# ## 1. Grids and their cost
#
# Three factors with 4, 3 and 3 values make a **full grid** of $4 \times 3 \times 3 = 36$
# runs. The report shows only eight curves, and they are a different design: a **base
# point** (512 codes, $\beta = 1.25$, learning rate $10^{-3}$) and runs that change **one
# factor at a time** from it. That costs $1 + 3 + 2 + 2 = 8$ runs instead of 36. The price:
# it cannot see interactions. If a small learning rate only hurts with a large codebook,
# a one-at-a-time design never finds out, because it never tries that pair.
#
# `dlstudio-lite sweep` does both. Every `--grid KEY=V1,V2,...` is a factor; any option
# of `dlstudio-lite train MODEL` can be one (a flag such as `lr`, or any constructor
# argument of the model, such as `num_codes` or `beta`). Without `--base` the command runs
# every combination; with `--base KEY=VALUE` for each factor it runs one factor at a time.
# Every other flag goes unchanged to each run. `--print-commands` shows what it would run:

# %%
FACTORS = ["--grid", "beta=0.25,0.75,1.25,1.75", "--grid", "lr=1e-3,1e-4,1e-5",
           "--grid", "num_codes=128,256,512"]
BASE = ["--base", "beta=1.25", "--base", "lr=1e-3", "--base", "num_codes=512"]
dlstudio_lite(["sweep", "vqvae", *FACTORS, *BASE, "--out", "runs/ofat", "--steps", "800",
               "--print-commands"])

# %% [markdown]
# Each line is an ordinary `train` command with its own output folder, named after its
# settings. Nothing else happens in a sweep: the training code is the one you used in
# lectures 5 and 6, so a sweep can never train differently from a single run.
#
# ## 2. A sweep you can watch
#
# Two tiny points, a few training steps each, in a temporary folder. The command prints a
# progress bar over the points and writes `sweep.csv`, one row per point. (In quick mode
# the runs are too short to learn anything; the point is the command.)

# %%
demo = Path(tempfile.mkdtemp(prefix="sweep_demo_"))
# The recipe sweep_demo (dlstudio_lite/recipes.py) holds the tiny runs' settings and the
# factor; the command adds where the runs go and how many threads each gets.
RUN = ["--threads", "1", "--data-root", str(demo / "data")]  # tiny models: 1 thread is fastest
live = ["sweep", "--recipe", "sweep_demo", "--out", str(demo / "sweep"), *RUN]
print("$ dlstudio-lite", shlex.join(live))
assert dlstudio_lite(live) == 0
rows = read_table(demo / "sweep" / "sweep.csv")
for row in rows:
    print(f"{row['point']:>10}: {row['status']}, {row['seconds']:.1f} s, "
          f"test MSE {row['mse']:.3f}, test perplexity {row['perplexity']:.1f}")

# %% [markdown]
# Run the same command again and nothing is trained: a point whose folder holds a finished
# run (its `metrics.json`, from a run that was not interrupted) is skipped, and a point that
# was stopped half way resumes from its checkpoint. So a sweep that a power cut or Ctrl-C
# stopped simply continues where it was. Changing a setting of the runs (say `--steps`)
# with the same `--out` is refused, since the finished folders would then hold other runs.

# %%
assert dlstudio_lite(live) == 0   # "2 already finished, 0 to run"
print("columns of sweep.csv:", ", ".join(list(rows[0])[:14]), "...")

# %% [markdown]
# The table holds the settings, the run's time, the final test metrics of its
# `metrics.json` (MSE, PSNR, perplexity, fraction of codes used), and for every logged curve
# its final value, its best value and the step of the best (`train_loss_best`,
# `test_perplexity_best_step`, ...), and for the perplexity curves the first step at which
# they reached 95% of their best (`..._steps_to_95pct`). Each run's folder also keeps its
# curves as numbers (`history.json`), which is what the rest of this notebook plots.
#
# ## 3. The shipped sweep
#
# The course ships the results of the report's one-at-a-time design on the shapes (the
# table and the curves, 8 runs, no checkpoints). It was made by one command, with
# the same three factors and the same base point as the report:
#
# ```bash
# dlstudio-lite sweep --recipe sweep_shapes --jobs 2 --results-only --out data/checkpoints/sweep_shapes
# ```
#
# (the recipe `sweep_shapes` in `dlstudio_lite/recipes.py` holds the factors, the base point
# and every setting of the runs; `data/checkpoints/README.md` lists them)
#
# It differs from the report in scale, not in kind: 32x32 shapes instead of 64x64 faces,
# 800 iterations of 16 images instead of 10,000, a narrow network, an 8x8 grid of codes per
# image. The codebook learns by gradient descent on the codebook term of the loss
# (`--quantizer gradient`), as in the report, not by the EMA update the course uses
# elsewhere, and without k-means start or dead-code restarts, so that the three factors act
# as they did there. The whole sweep costs about 10 CPU minutes.

# %%
SHIPPED = CHECKPOINTS / "sweep_shapes"
if not (SHIPPED / "sweep.csv").exists():
    # A missing folder (e.g. a moved DLSTUDIO_LITE_CHECKPOINTS): the same design, much shorter.
    print(f"{SHIPPED / 'sweep.csv'} is missing: running a short version of the sweep here")
    SHIPPED = demo / "ofat"
    dlstudio_lite(["sweep", "--recipe", "sweep_demo", *FACTORS, *BASE, "--out", str(SHIPPED), *RUN,
                   "--quantizer", "gradient", "--no-kmeans-init", "--dead-code-steps", "0"])
table = [r for r in read_table(SHIPPED / "sweep.csv") if r["status"] == "finished"]
histories = {r["point"]: json.loads((SHIPPED / r["point"] / "history.json").read_text())
             for r in table}
base = next(r for r in table if r["varied"] == "base")
print(f"{len(table)} finished runs; {sum(r['seconds'] for r in table) / 60:.1f} min wall, "
      f"{sum(r['cpu_seconds'] or 0 for r in table) / 60:.1f} CPU min in total")

# %% [markdown]
# ## 4. Loss and perplexity curves, one factor per row
#
# Each row of the figure changes one factor; the base run (black) appears in every row.
# Left: the reconstruction error on the training batches (log scale). Right: the
# perplexity of the codes used in a batch, $\exp$ of the entropy of their histogram, so
# 512 if all 512 codes were used equally and 1 if one code did everything.

# %%
FACTOR_NAMES = {"beta": r"commitment $\beta$", "lr": "learning rate", "num_codes": "codebook size"}


def runs_of(factor):
    """The base run and the runs that change `factor`, sorted by its value."""
    runs = [r for r in table if r["varied"] in ("base", factor)]
    return sorted(runs, key=lambda r: float(r[factor]))


def curve(point, key):
    steps, values = zip(*histories[point][key])
    return np.array(steps), np.array(values)


fig, axes = plt.subplots(3, 2, figsize=(11, 9.5), sharex=True)
for (factor, label), (ax_loss, ax_ppl) in zip(FACTOR_NAMES.items(), axes):
    for r in runs_of(factor):
        style = dict(color="black", lw=2.2) if r["varied"] == "base" else dict(lw=1.3)
        name = f"{factor} = {r[factor]:g}"
        ax_loss.plot(*curve(r["point"], "train/recon"), label=name, **style)
        ax_ppl.plot(*curve(r["point"], "train/perplexity"), label=name, **style)
    ax_loss.set_yscale("log")
    ax_loss.set_ylabel(f"{label}\nreconstruction MSE")
    ax_ppl.set_ylabel("perplexity (batch)")
    ax_ppl.legend(fontsize=8)
for ax in axes[-1]:
    ax.set_xlabel("iteration")
axes[0, 0].set_title("training loss (reconstruction term)")
axes[0, 1].set_title("codebook perplexity")
fig.tight_layout()
plt.show()

# %% [markdown]
# Three things stand out before any conclusion about the factors.
#
# - **The perplexity starts high and collapses.** At initialisation the encoder's outputs
#   are spread over many codes; within the first few dozen iterations most of them crowd
#   onto a handful of codes, and the perplexity then climbs back slowly. This is the
#   codebook collapse of lecture 5 (the course's EMA codebook with k-means start and
#   dead-code restarts avoids it; this sweep switched those off on purpose).
# - **Nothing has saturated after 800 iterations.** The perplexity of the good runs is
#   still climbing when they stop, so "the best perplexity" of a run is mostly its last
#   value. The report's runs were 12 times longer.
# - **Only a few percent of the codebook is in use**, whatever its size: the perplexities
#   are in the tens, not the hundreds the report saw on faces after 10,000 iterations.
#
# ## 5. Iterations to reach 95% of the best perplexity
#
# The report's yardstick. Read literally on the training curve it is fooled by the
# start: the first logged perplexity, before the collapse, can be the highest value of the
# whole run, and then the "time to the best" is 10 iterations. The test curve, measured
# every 100 iterations on held-out images, starts after the collapse, so the figure uses it
# (both versions are in the table: `train_perplexity_steps_to_95pct` and
# `test_perplexity_steps_to_95pct`).

# %%
fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
for ax, (factor, label) in zip(axes, FACTOR_NAMES.items()):
    runs = runs_of(factor)
    names = [f"{r[factor]:g}" for r in runs]
    test_steps = [r["test_perplexity_steps_to_95pct"] for r in runs]
    train_steps = [r["train_perplexity_steps_to_95pct"] for r in runs]
    x = np.arange(len(runs))
    ax.bar(x - 0.2, test_steps, 0.4, label="test curve")
    ax.bar(x + 0.2, train_steps, 0.4, label="training curve", color="lightgray")
    for xi, r in zip(x, runs):
        ax.annotate(f"best {r['test_perplexity_best']:.0f}", (xi - 0.2, r["test_perplexity_steps_to_95pct"]),
                    ha="center", va="bottom", fontsize=8)
    ax.set_xticks(x, names)
    ax.set_xlabel(label)
    ax.set_ylim(0, 900)
axes[0].set_ylabel("iterations to 95% of best perplexity")
axes[0].legend(fontsize=8, loc="upper left")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 6. Where the runs ended: test reconstruction and codebook use

# %%
fig, axes = plt.subplots(2, 3, figsize=(12, 5.5), sharey="row")
for col, (factor, label) in enumerate(FACTOR_NAMES.items()):
    runs = runs_of(factor)
    names = [f"{r[factor]:g}" for r in runs]
    colors = ["black" if r["varied"] == "base" else "tab:blue" for r in runs]
    axes[0, col].bar(names, [r["psnr"] for r in runs], color=colors)
    axes[1, col].bar(names, [r["perplexity"] for r in runs], color=colors)
    for i, r in enumerate(runs):
        axes[1, col].annotate(f"{100 * r['codebook_usage']:.0f}% used", (i, r["perplexity"]),
                              ha="center", va="bottom", fontsize=8)
    axes[1, col].set_xlabel(label)
axes[0, 0].set_ylabel("test PSNR (dB)")
axes[1, 0].set_ylabel("test perplexity")
fig.suptitle("end of training (black: the base run)")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 7. The report's conclusions, checked
#
# The report drew three conclusions from its curves and picked a best setting. The cell
# below measures each on the shipped runs. "Slower" means more iterations to reach 95% of
# the best test perplexity, and, for the loss, a higher training reconstruction error at
# the end of the run (the runs are too short for a "time to the minimum").

# %%
def by(factor, column):
    return {r[factor]: r[column] for r in runs_of(factor)}


def increasing(values):
    return all(b >= a for a, b in zip(values, values[1:]))


def report(claim, factor, order, column):
    values = by(factor, column)
    ordered = [values[k] for k in order]
    text = ", ".join(f"{k:g}: {v:.4g}" for k, v in zip(order, ordered))
    verdict = "agrees" if increasing(ordered) else "does not agree"
    print(f"{claim}\n    {column} -> {text}  [{verdict}]")


final_recon = "train_recon_final"
report("1. a smaller learning rate needs more iterations to reach its best perplexity",
       "lr", [1e-3, 1e-4, 1e-5], "test_perplexity_steps_to_95pct")
report("   ... and its error comes down more slowly", "lr", [1e-3, 1e-4, 1e-5], final_recon)
report("2. a larger codebook needs more iterations to reach its best perplexity",
       "num_codes", [128, 256, 512], "test_perplexity_steps_to_95pct")
report("3. a larger commitment weight needs more iterations to reach its best perplexity",
       "beta", [0.25, 0.75, 1.25, 1.75], "test_perplexity_steps_to_95pct")
report("   ... and to reach its lowest error", "beta", [0.25, 0.75, 1.25, 1.75], final_recon)
best = max(table, key=lambda r: r["test_perplexity_best"])
print(f"4. best setting in the report: 512 codes, beta 1.25, lr 1e-3; here the highest test "
      f"perplexity: {best['point']} ({best['test_perplexity_best']:.1f}); the lowest test "
      f"MSE: {min(table, key=lambda r: r['mse'])['point']}")

# %% [markdown]
# RESULTS_PROSE
#
# ## 8. Your own sweep: CelebA, an image folder, a cluster
#
# The command is the same for any dataset `train` reads. With CelebA in `data/celeba/`
# (torchvision's layout; `dlstudio-lite train --help` says where the files go) the report's
# full grid at its own scale is
#
# ```bash
# dlstudio-lite sweep vqvae --dataset celeba --image-size 64 \
#     --grid beta=0.25,0.75,1.25,1.75 --grid lr=1e-3,1e-4,1e-5 --grid num_codes=128,256,512 \
#     --quantizer gradient --steps 10000 --batch-size 32 --log-every 50 --eval-every 500 \
#     --jobs 2 --out runs/celeba_sweep
# ```
#
# For your own pictures (say skin-lesion images, as in another of the course's student
# projects), put them in `my_images/<any class name>/*.png` and pass
# `--dataset folder:my_images`. `--jobs N` runs N points at a time, each in its own
# process with its share of the CPU threads; on a machine with GPUs each running point gets
# one GPU of its own (`CUDA_VISIBLE_DEVICES`, round robin). The 36 runs of 10,000
# iterations take hours on one GPU, so for a first look use the 8-run design above
# (`--base ...`), and for more than one machine print the commands and hand them to the
# cluster's scheduler. With SLURM, as a job array, one point per task:
#
# ```bash
# dlstudio-lite sweep vqvae ... --out runs/celeba_sweep --print-commands > points.txt
# sbatch --array=1-$(wc -l < points.txt) --gpus=1 \
#     --wrap 'eval "$(sed -n ${SLURM_ARRAY_TASK_ID}p points.txt)"'
# dlstudio-lite sweep vqvae ... --out runs/celeba_sweep --collect   # afterwards: the table
# ```
#
# `--collect` only writes `sweep.csv` from the folders as they are (unfinished points are
# listed as `missing` or `failed`), so you can also use it to look at a sweep while it runs.
#
# ## Summary
#
# - A full grid costs the product of the numbers of values; one factor at a time around a
#   base point costs their sum, and cannot see interactions between factors.
# - `dlstudio-lite sweep MODEL --grid KEY=V1,V2 ... --out DIR [train flags]` runs one
#   ordinary `train` per point (in parallel with `--jobs`, skipping finished points when
#   restarted, or printed for a job array) and writes one table, `sweep.csv`.
# - "Iterations to the best perplexity" is only meaningful once the curve has settled:
#   read on the training curve it can pick the random start before the codebook collapses.
# - SUMMARY_RESULTS
#
# ## Questions to think about
#
# 1. The commitment term $\beta \lVert z_e - \mathrm{sg}[e] \rVert^2$ pulls the encoder
#    towards the codes it already uses. Why might a large $\beta$ make it *harder* for an
#    unused code ever to be chosen?
# 2. With the gradient codebook, a code that is never chosen gets no gradient at all. Which
#    of the three factors can change that, and which cannot?
# 3. The perplexity here is measured on batches of 16 images, 1,024 code positions. What is
#    the largest perplexity such a batch can show with 512 codes, and how would you measure
#    codebook use without that limit?
# 4. Design a sweep of 12 runs that could detect whether the best learning rate depends on
#    the codebook size. Which runs of the one-at-a-time design would you keep?
# 5. The report chose its best setting from runs of 10,000 iterations on 55,000 faces and
#    then trained on the whole dataset. What could change when the data and the training
#    time grow, and how would you check?
