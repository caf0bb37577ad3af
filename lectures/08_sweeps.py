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

import contextlib
import io
import json
import shlex
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from dlstudio_lite import CHECKPOINTS, pick, quick_mode, read_table
from dlstudio_lite.claims import claim, say, summary
from dlstudio_lite.cli import build_parser
from dlstudio_lite.commands.train import recipe_in
from dlstudio_lite.recipes import recipe
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


def printed_points(argv):
    """The `train` commands (as argument lists) that the sweep ARGV prints with --print-commands."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert dlstudio_lite([*argv, "--print-commands"]) == 0
    print(out.getvalue(), end="")
    return [shlex.split(line)[1:] for line in out.getvalue().splitlines()]


ofat = printed_points(["sweep", "vqvae", *FACTORS, *BASE, "--out", "runs/ofat", "--steps", "800"])
claim(len(ofat) == 1 + 3 + 2 + 2, "That costs 1 + 3 + 2 + 2 = 8 runs instead of 36", quick=True,
      detail=f"{len(ofat)} commands printed")

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
          f"test MSE {row['mse']:.3f}, test perplexity (final evaluation) {row['perplexity']:.1f}")

# %% [markdown]
# Run the same command again and nothing is trained: a point whose folder holds a finished
# run (its `metrics.json`, from a run that was not interrupted) is skipped, and a point that
# was stopped half way resumes from its checkpoint. So a sweep that a power cut or Ctrl-C
# stopped simply continues where it was. Changing a setting of the runs (say `--steps`)
# with the same `--out` is refused, since the finished folders would then hold other runs.

# %%
finished_at = {f: f.stat().st_mtime_ns for f in (demo / "sweep").glob("*/metrics.json")}
assert dlstudio_lite(live) == 0   # "2 already finished, 0 to run"
claim(finished_at and all(f.stat().st_mtime_ns == t for f, t in finished_at.items()),
      "Run the same command again and nothing is trained", quick=True,
      detail="a point's metrics.json was rewritten by the second run")
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
# table and the curves of 8 runs of 800 iterations, no checkpoints) and, for section 7,
# longer runs of some of its points. Each is a named recipe in `dlstudio_lite/recipes.py`
# (`sweep_shapes`: the factors, the base point and every setting of the runs). The cell below
# prints the command that made the 8 runs and checks it: every `train` command it stands for
# must give the settings that the shipped run of that point recorded in its `config.json`.
# The runs were made before k-means start and dead-code restarts became the defaults of
# `train vqvae`, so the recipe switches both off (`kmeans_init=False, dead_code_steps=0`);
# without that it would train other runs.
#
# The sweep differs from the report in scale, not in kind: 32x32 shapes instead of 64x64
# faces, 800 iterations of 16 images instead of 10,000, a narrow network, an 8x8 grid of
# codes per image. The codebook learns by gradient descent on the codebook term of the loss
# (`--quantizer gradient`), as in the report, not by the EMA update the course uses
# elsewhere, and without k-means start or dead-code restarts, so that the three factors act
# as they did there.

# %%
SHORT_SWEEP = ["sweep", "--recipe", "sweep_shapes", "--jobs", "2", "--results-only",
               "--out", "data/checkpoints/sweep_shapes"]
COMPARED = {"hparams": ["beta", "num_codes", "code_dim", "base_channels", "quantizer", "kmeans_init",
                        "dead_code_steps"],
            "train": ["steps", "batch_size", "lr", "scheduler", "seed", "log_every", "eval_every",
                      "eval_batches"],
            None: ["dataset", "image_size", "num_images"]}


def show_command(argv):
    """Print the command line ARGV, wrapped like a shell command."""
    lines, line = [], "$ dlstudio-lite"
    for word in map(shlex.quote, argv):
        if word.startswith("--") and len(line) > 70:
            lines.append(line + " \\")
            line = "   "
        line += " " + word
    print("\n".join([*lines, line]))


def differences(point_argv, folder):
    """The settings in which `train POINT_ARGV` differs from the run shipped in FOLDER."""
    argv, chosen = recipe_in(point_argv)
    # The recipe as shipped (in quick mode too: the runs on disk are the full ones).
    args = build_parser(recipe(chosen.name, quick=False) if chosen else None).parse_args(argv)
    config = json.loads((folder / "config.json").read_text())
    found = []
    for part, keys in COMPARED.items():
        recorded = config[part] if part else config
        found += [f"{key}: command {getattr(args, key)!r}, shipped {recorded[key]!r}"
                  for key in keys if getattr(args, key) != recorded[key]]
    return found


def check_sweep_command(argv, sentence):
    """Print the sweep command, then claim that each of its points matches its shipped run."""
    show_command(argv)
    out = Path(argv[argv.index("--out") + 1])
    shipped_here = CHECKPOINTS / out.relative_to("data/checkpoints")
    if not shipped_here.exists():
        print(f"({shipped_here} is not here: nothing to check the command against)")
        return
    with contextlib.redirect_stdout(io.StringIO()):
        points = printed_points(argv)
    problems = {}
    for words in points:
        words = words[words.index("train"):]          # (quick mode prefixes an environment setting)
        folder = shipped_here / Path(words[words.index("--out") + 1]).name
        problems[folder.name] = (differences(words, folder) if (folder / "config.json").exists()
                                 else ["not shipped"])
    claim(not any(problems.values()), sentence, quick=True,
          detail="; ".join(f"{k}: {', '.join(v)}" for k, v in problems.items() if v))
    print(f"checked: the command's {len(points)} runs have the settings of the shipped ones")


check_sweep_command(SHORT_SWEEP, "the printed command made the shipped sweep of 800 iterations")

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
say(f"The {len(table)} runs took {sum(r['cpu_seconds'] or 0 for r in table) / 60:.1f} CPU minutes "
    f"in all ({sum(r['seconds'] for r in table) / 60:.1f} minutes of wall time summed over the runs, which ran "
    "two at a time on a machine shared with other jobs).")

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
# Three things stand out before any conclusion about the factors (the cell below measures
# them on the curves).

# %%
fast = [r for r in table if r["lr"] == 1e-3]
lr4, lr5 = (next(r for r in table if r["lr"] == lr) for lr in (1e-4, 1e-5))


def at(steps, values, step):
    return float(values[steps == step][0])


def lr_text(lr):
    return f"{lr:.0e}".replace("e-0", "e-")      # 0.0001 -> "1e-4"


fall = [at(*curve(r["point"], "train/perplexity"), 10) for r in fast]
fall = [curve(r["point"], "train/perplexity")[1][:10].min() / first for r, first in zip(fast, fall)]
rise = [at(*curve(r["point"], "test/perplexity"), 800) / at(*curve(r["point"], "test/perplexity"), 600) - 1
        for r in fast]
s4, v4 = curve(lr4["point"], "train/perplexity")
s5, v5 = curve(lr5["point"], "test/perplexity")
usage = [r["codebook_usage"] for r in table]
ppl = [r["perplexity"] for r in table]     # final evaluation (metrics.json)
curve_below = max(1 - r["test_perplexity_final"] / r["perplexity"] for r in table)   # logged test curve, step 800
say(f"""- **The perplexity starts high and collapses.** At learning rate $10^{{-3}}$ every run's batch
  perplexity falls within its first 100 iterations to between {min(fall):.0%} and {max(fall):.0%}
  of its first logged value (most of the encoder's outputs crowd onto a few codes), and then
  climbs back slowly. At $10^{{-4}}$ the fall lasts until step {int(s4[v4.argmin()])} (perplexity
  {v4.min():.1f}), and at step 800 the curve is still near its bottom ({v4[-1]:.1f}); at $10^{{-5}}$
  the test perplexity is still falling at step 800 ({at(s5, v5, 600):.1f} at step 600,
  {v5[-1]:.1f} at 800). This is the codebook collapse of lecture 5 (the course's EMA codebook
  with k-means start and dead-code restarts avoids it; this sweep switched those off on
  purpose).
- **Nothing has settled after 800 iterations.** The test perplexity of every run at
  $10^{{-3}}$ is still rising: by {min(rise):.0%} to {max(rise):.0%} over the last 200 iterations.
  So "the best perplexity" of such a run is at or near its last value; section 7 runs some points
  longer.
- **The codebook is far from fully used.** At the end between {min(usage):.0%} and
  {max(usage):.0%} of the codes appear in the test images (perplexity of the *final evaluation*,
  the codes of all 128 test images in one histogram: {min(ppl):.1f} to {max(ppl):.1f}; the *logged
  test curve*, a mean over batches of 16 images, reads up to {curve_below:.0%} lower at the same step, and
  sections 7 and 8 use it throughout): the smaller the learning rate, the fewer, and a smaller codebook has the larger
  share in use. The report saw perplexities over 400 on faces after 10,000 iterations.""",
    (max(fall) < 0.7, "every run at lr 1e-3 falls within 100 iterations to well below its first value"),
    (all(curve(r["point"], "train/perplexity")[1][-1] > curve(r["point"], "train/perplexity")[1][:10].min()
         for r in fast), "... and then climbs back"),
    (s4[v4.argmin()] > 100 and v4[-1] < 1.5 * v4.min(), "at 1e-4 the fall is slower and the curve stays near its bottom"),
    (v5[-1] < at(s5, v5, 600), "at 1e-5 the test perplexity is still falling at step 800"),
    (min(rise) > 0.05, "every run at lr 1e-3 is still rising at step 800"),
    (max(usage) < 0.5, "the codebook is far from fully used"),
    (all(r["test_perplexity_final"] < r["perplexity"] for r in table) and curve_below < 0.1,
     "the logged test curve reads a little lower than the final evaluation"))

# %% [markdown]
# ## 5. Iterations to reach 95% of the best perplexity
#
# The report's yardstick. Read literally on the training curve it is fooled by the
# start: the first logged perplexity, before the collapse, can be the highest value of the
# whole run, and then the "time to the best" is 10 iterations. The test curve is measured
# every 100 iterations on held-out images, so it misses the first 100 iterations; whether it
# then starts after the collapse depends on the learning rate (measured below the figure).
# Both versions are in the table: `train_perplexity_steps_to_95pct` and
# `test_perplexity_steps_to_95pct`.

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
fig.legend(*axes[0].get_legend_handles_labels(), fontsize=8, loc="upper center", ncol=2)   # above the bars' labels
fig.tight_layout(rect=(0, 0, 1, 0.9))
plt.show()

# %%
test_first = {r["point"]: curve(r["point"], "test/perplexity") for r in table}
after = [r for r in fast if test_first[r["point"]][1].argmin() == 0]
slow = [r for r in table if r["lr"] < 1e-3]
train_late = [r for r in table if r["train_perplexity_steps_to_95pct"] > 100]
say(f"""At learning rate $10^{{-3}}$ the test curve starts after the collapse: for {len(after)} of
the {len(fast)} runs the first test perplexity (step 100) is the lowest of the run, and the best
comes at step {min(r['test_perplexity_best_step'] for r in fast)} or later. At $10^{{-4}}$ and
$10^{{-5}}$ the collapse takes longer than 100 iterations: their test curves start high and
fall ({', '.join(f"{lr_text(r['lr'])}: {test_first[r['point']][1][0]:.1f} at step 100, {test_first[r['point']][1][-1]:.1f} at 800" for r in slow)}),
so their bars of {', '.join(str(r['test_perplexity_steps_to_95pct']) for r in slow)} iterations measure
the *start* of the collapse, not a fast climb to a good codebook. On these runs the yardstick
cannot rank the learning rates, and on the others it only says that nothing has settled yet. The
training curve's bar is 10 iterations for every run except
{', '.join(f"{r['point']} ({r['train_perplexity_steps_to_95pct']})" for r in train_late) or 'none'},
whose first logged perplexity was low.""",
    (len(after) == len(fast), "at lr 1e-3 the test curve starts after the collapse"),
    (all(r["test_perplexity_best_step"] == 100 and test_first[r["point"]][1][-1] < test_first[r["point"]][1][0]
         for r in slow), "at 1e-4 and 1e-5 the test curves start high and fall; the best is the first point"),
    (all(r["train_perplexity_steps_to_95pct"] == 10 for r in table if r not in train_late),
     "the training curve's bar is 10 iterations for every other run"))

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
axes[1, 0].set_ylabel("test perplexity\n(final evaluation)")
fig.suptitle("end of training (black: the base run)")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 7. Longer runs: where do the curves settle?
#
# The 800-iteration runs stop while their perplexity is still climbing, so they cannot say
# how long a setting needs to reach its best. The course therefore ships longer runs of
# 3,000 iterations, with the same settings, of the points whose verdict needs them most: the
# base point, the learning rate $10^{-4}$ and the codebook of 128 codes; and the base point
# once more with another seed (`--seed 1`: another initialisation and data order), to see how
# much two runs of the *same* setting differ. (The first 800 iterations of the base run with
# seed 0 are the shipped 800-iteration run, step for step.) That is what the appendix's CPU
# budget allowed (the time is printed below); longer runs of the other points are left to you
# (the commands below, with more values). The two commands:

# %%
LONG_SWEEP = ["sweep", "--recipe", "sweep_shapes/long", "--jobs", "1", "--results-only",
              "--out", "data/checkpoints/sweep_shapes/long"]
SEED_SWEEP = ["sweep", "--recipe", "sweep_shapes/long_seed", "--jobs", "1", "--results-only",
              "--out", "data/checkpoints/sweep_shapes/long_seed"]
check_sweep_command(LONG_SWEEP, "the printed command made the shipped runs of 3,000 iterations")
check_sweep_command(SEED_SWEEP, "the printed command made the shipped run with seed 1")

# %%

def load_sweep(folder):
    """The finished points of a sweep folder: {point: table row with its history}."""
    rows = [r for r in read_table(folder / "sweep.csv") if r["status"] == "finished"]
    return {r["point"]: {**r, "history": json.loads((folder / r["point"] / "history.json").read_text())}
            for r in rows}


LONG = CHECKPOINTS / "sweep_shapes" / "long"
if (LONG / "sweep.csv").exists() and (CHECKPOINTS / "sweep_shapes" / "long_seed" / "sweep.csv").exists():
    long_runs = load_sweep(LONG)
    seed_runs = load_sweep(CHECKPOINTS / "sweep_shapes" / "long_seed")
else:   # not shipped here: short stand-ins, so that the cells below still run
    print("the longer runs are not here: the 800-iteration runs stand in for them")
    long_runs = {r["point"]: {**r, "history": histories[r["point"]]} for r in table
                 if r["beta"] == 1.25 and r["lr"] in (1e-3, 1e-4)}
    seed_runs = {}
long_base = next(r for r in long_runs.values() if r["varied"] == "base")
seed_base = next(iter(seed_runs.values()), long_base)
long_cpu = sum(r["cpu_seconds"] or 0 for r in [*long_runs.values(), *seed_runs.values()])
print(f"{len(long_runs) + len(seed_runs)} runs, {long_cpu / 60:.1f} CPU minutes in all")
first_800 = [v for s, v in long_base["history"]["test/perplexity"] if s <= 800]
claim(np.allclose(first_800, curve(base["point"], "test/perplexity")[1]), quick=True,
      sentence="the first 800 iterations of the base run with seed 0 are the shipped 800-iteration run, step for step")


def test_of(run, key):
    steps, values = zip(*run["history"][f"test/{key}"])
    return np.array(steps), np.array(values)


def steps_to_best(run, fraction=0.95):
    """First step after the collapse (the curve's lowest point) at which the test perplexity
    reaches `fraction` of its best; the report's yardstick, without the start's artefact."""
    steps, values = test_of(run, "perplexity")
    low = values.argmin()
    later = values[low:]
    return int(steps[low:][np.argmax(later >= fraction * later.max())])


def rise_last(run, key="perplexity", window=500):
    """Relative change of a test curve over its last `window` iterations."""
    steps, values = test_of(run, key)
    return values[-1] / values[steps == steps[-1] - window][0] - 1


def first_below(run, level):
    """First step at which the test reconstruction error is at or below `level` (None: never)."""
    steps, values = test_of(run, "recon")
    hits = steps[values <= level]
    return int(hits[0]) if len(hits) else None


def label(run):
    return (f"seed 1 (base)" if run is seed_base and seed_runs else
            "base" if run["varied"] == "base" else
            f"lr = {lr_text(run['lr'])}" if run["varied"] == "lr" else f"{run['varied']} = {run[run['varied']]:g}")


fig, axes = plt.subplots(1, 2, figsize=(12, 4))
for run in [*long_runs.values(), *seed_runs.values()]:
    style = (dict(color="black", lw=2.2) if run is long_base else
             dict(color="black", lw=1.2, ls="--") if run is seed_base and seed_runs else dict(lw=1.3))
    axes[0].plot(*test_of(run, "perplexity"), label=label(run), **style)
    axes[1].plot(*test_of(run, "recon"), label=label(run), **style)
    if run.get("lr", 1e-3) == 1e-3:      # (the seed run's table has no lr column: it is the base's)
        best_at = steps_to_best(run)
        axes[0].plot(best_at, test_of(run, "perplexity")[1][test_of(run, "perplexity")[0] == best_at],
                     "o", color=style.get("color", axes[0].lines[-1].get_color()))
axes[0].set(xlabel="iteration", ylabel="test perplexity",
            title="3,000 iterations (dots: 95% of the best after the collapse)")
axes[1].set(xlabel="iteration", ylabel="test reconstruction MSE", yscale="log", title="test error")
axes[0].legend(fontsize=8)
fig.tight_layout()
plt.show()
for run in [*long_runs.values(), *seed_runs.values()]:
    print(f"{label(run):18s} best test perplexity {test_of(run, 'perplexity')[1].max():5.1f}, "
          f"95% of it after the collapse at step {steps_to_best(run):4d}; over the last 500 "
          f"iterations perplexity {rise_last(run):+.0%}, error {rise_last(run, 'recon'):+.0%}")

# %% [markdown]
# ## 8. The report's conclusions, checked
#
# The report drew three conclusions from its curves and picked a best setting. The cells
# below give a verdict on each, computed from the runs: "iterations to the best" is the
# first step, after the collapse, at which the test perplexity reaches 95% of its best
# (section 7), and it is only used on runs whose test perplexity changes by less than 10% over
# their last 500 iterations (all of them still rise a little: the numbers above). The two seeds of the base
# point tell how large a difference must be before it says anything about the setting rather
# than about the seed.

# %%
def long_run(**settings):
    return next((r for r in long_runs.values() if all(r[k] == v for k, v in settings.items())), None)


def short_run(**settings):
    row = next(r for r in table if all(r[k] == v for k, v in settings.items()))
    return {**row, "history": histories[row["point"]]}


def value_at(run, key, step):
    """The test curve's value at `step` (or at its last step before, for a shorter run)."""
    steps, values = test_of(run, key)
    return float(values[steps <= step][-1])


def first_reaching(run, level):
    """First step at which the test perplexity of `run` reaches `level` (None: never)."""
    steps, values = test_of(run, "perplexity")
    hits = steps[values >= level]
    return int(hits[0]) if len(hits) else None


SETTLED = 0.10    # the test perplexity must change by less than 10% over the last 500 iterations
seed_steps = abs(steps_to_best(long_base) - steps_to_best(seed_base))
seed_ppl = {step: abs(value_at(long_base, "perplexity", step) / value_at(seed_base, "perplexity", step) - 1)
            for step in (800, 3000)}
seed_err = {step: abs(value_at(long_base, "recon", step) / value_at(seed_base, "recon", step) - 1)
            for step in (800, 3000)}
say(f"""**Two seeds of the base point** (same settings, another initialisation and data order):
95% of the best perplexity at step {steps_to_best(long_base)} and {steps_to_best(seed_base)}, a
difference of {seed_steps} iterations; the logged test perplexity differs by {seed_ppl[800]:.0%} at step 800
({value_at(long_base, 'perplexity', 800):.1f} and {value_at(seed_base, 'perplexity', 800):.1f}) and
{seed_ppl[3000]:.0%} at step 3,000, the test error by {seed_err[800]:.1%} and {seed_err[3000]:.1%}. Both
perplexity curves change by under {SETTLED:.0%} over the last 500 iterations ({rise_last(long_base):+.0%} and
{rise_last(seed_base):+.0%}), still rising. So the *level* a setting's perplexity
reaches can depend on the seed by {seed_ppl[3000]:.0%}; only larger differences say something about the setting.""",
    (bool(seed_runs), "there is a second seed of the base point"),
    (max(abs(rise_last(long_base)), abs(rise_last(seed_base))) < SETTLED,
     "both base curves change by under 10% over the last 500 iterations"),
    (min(rise_last(long_base), rise_last(seed_base)) > 0, "... still rising"))

# %%
r3, r4, r5 = long_base, long_run(lr=1e-4), short_run(lr=1e-5)
e800 = value_at(r3, "recon", 800)
ppl4 = test_of(r4, "perplexity")[1][-1]
err4_step, same_ppl_step = first_below(r4, e800), first_reaching(r3, ppl4)
lr_slower = (err4_step is None or err4_step > 800) and same_ppl_step is not None and same_ppl_step < 3000
say(f"""**1. "As the learning rate is decreased, the perplexity requires more iterations to reach
the saturation level; the error also takes more time to reach its minimum."**
{'Agrees' if lr_slower else 'Does not agree'} on our runs. At $10^{{-3}}$ the test perplexity reaches 95% of its
best ({test_of(r3, 'perplexity')[1].max():.1f}) at step {steps_to_best(r3)} and then changes by under
{SETTLED:.0%} ({rise_last(r3):+.0%} over the last 500 iterations). At $10^{{-4}}$
it is at {ppl4:.1f} after 3,000 iterations ({rise_last(r4):+.0%} over the last 500), a level the
$10^{{-3}}$ run passed at step {same_ppl_step}. The error says the same: the test error that $10^{{-3}}$
had at step 800 ({e800:.3f}) takes $10^{{-4}}$ {f'{err4_step:,} iterations' if err4_step else 'longer than 3,000 iterations'}.
At $10^{{-5}}$ (800 iterations only) the test error at step 800 is {value_at(r5, 'recon', 800):.3f}, more than
the $10^{{-3}}$ run had at step 100 ({value_at(r3, 'recon', 100):.3f}), and the perplexity is still
collapsing ({test_of(r5, 'perplexity')[1][-1]:.1f} at step 800). Unlike the bars of section 5, this does
not rest on where a curve starts. (Read the report's way, $10^{{-4}}$ reaches 95% of its *own* best at step
{steps_to_best(r4)}, {'as early as' if steps_to_best(r4) <= steps_to_best(r3) else 'later than'} $10^{{-3}}$; but its best is a perplexity of
{test_of(r4, 'perplexity')[1].max():.1f} against {test_of(r3, 'perplexity')[1].max():.1f}: "the time to the best" says nothing
when the bests differ this much.)""",
    (lr_slower, "a smaller learning rate needs more iterations, for the perplexity and for the error"),
    (abs(rise_last(r3)) < SETTLED, "at 1e-3 the test perplexity changes by under 10% over the last 500 iterations"),
    (value_at(r5, "recon", 800) > value_at(r3, "recon", 100), "1e-5 after 800 iterations is worse than 1e-3 after 100"))

# %%
by_codes = {k: long_run(num_codes=k, lr=1e-3) for k in (128, 256, 512)}
by_codes = {k: r for k, r in by_codes.items() if r is not None}     # the sizes run for 3,000 iterations
to_best = {k: steps_to_best(r) for k, r in by_codes.items()}
settled = {k: abs(rise_last(r)) < SETTLED for k, r in by_codes.items()}
order = list(to_best.values())
grows = len(order) > 1 and all(b > a for a, b in zip(order, order[1:]))
MARGIN = max(seed_steps, 300)     # what two seeds differ by, and at least three evaluations
clear = grows and min(b - a for a, b in zip(order, order[1:])) > MARGIN
codes_verdict = ("Not tested here: only the 512-code run is long enough to settle" if len(order) < 2 else
                 "Agrees" if clear else
                 f"Not shown: the order is right, but the steps differ by no more than the margin of {MARGIN} "
                 "iterations" if grows else
                 "Does not agree: the smaller codebook was slower" if order[0] - order[-1] > MARGIN else
                 f"Not shown: the smaller codebook was not faster, but by a gap of {order[0] - order[-1]} "
                 f"iterations, not more than the margin of {MARGIN}")
short_codes = [short_run(num_codes=k, lr=1e-3, beta=1.25) for k in (128, 256, 512)]
still_rising = [k for k, r in by_codes.items() if rise_last(r) > 0]
rising_note = (f"The curves of {', '.join(map(str, still_rising))} codes still end "
               f"{', '.join(f'{rise_last(by_codes[k]):.0%}' for k in still_rising)} above "
               "where they were 500 iterations earlier, "
               "which can only move their step later, never earlier. " if still_rising else "")
say(f"""**2. "As the number of embeddings increased, it took more iterations to reach the best
perplexity"** (the report: about 2,000, 5,500 and 6,000 iterations for 128, 256 and 512 codes).
{codes_verdict}. After 3,000 iterations, 95% of the best test perplexity comes at step
{', '.join(f'{v:,}' for v in to_best.values())} for {', '.join(map(str, by_codes))} codes (best
{', '.join(f"{test_of(r, 'perplexity')[1].max():.1f}" for r in by_codes.values())}); two seeds of the
512-code run differ by {seed_steps} iterations here, and the curves are read every 100, so only a
difference of more than {MARGIN} iterations counts. The long curves change by under {SETTLED:.0%} over their
last 500 iterations ({', '.join(f'{rise_last(r):+.0%}' for r in by_codes.values())}). {rising_note}(The 800-iteration
runs of 128, 256 and 512 codes are all still rising at their last step: logged test curve
{', '.join(f"{r['test_perplexity_final']:.1f}" for r in short_codes)}.)""",
    (all(settled.values()), "the long codebook runs change by under 10% over their last 500 iterations, "
                            "so their iterations to the best can be compared"),
    (all(r["test_perplexity_best_step"] == 800 for r in short_codes), "the 800-iteration codebook runs are still rising at their last step"))

# %%
betas = [0.25, 0.75, 1.25, 1.75]
beta_runs = [short_run(beta=b, lr=1e-3, num_codes=512) for b in betas]
ppl800 = [r["test_perplexity_final"] for r in beta_runs]
err800 = [r["test_recon_final"] for r in beta_runs]
err_spread = max(err800) / min(err800) - 1
seed1_800 = value_at(seed_base, "perplexity", 800)        # the second seed of beta = 1.25, at step 800
last_step = ppl800[3] / max(ppl800[2], seed1_800) - 1      # 1.25 -> 1.75, against the higher seed of 1.25
say(f"""**3. "As the commitment cost increased from 0.25 to 1.75, the number of iterations to reach
the best perplexity and the lowest error also increased."** Not tested here: the runs of
$\\beta$ have 800 iterations only, and no run settles that early (section 4), so their
"iterations to the best" are all at or near the last step ({', '.join(str(r['test_perplexity_best_step']) for r in beta_runs)}).
What the runs do show is a different effect: in these runs, the larger $\\beta$, the more codes in use at
step 800 (logged test curve {', '.join(f'{v:.1f}' for v in ppl800)} for $\\beta$ = {', '.join(f'{b:g}' for b in betas)};
the second seed of $\\beta = 1.25$ reads {seed1_800:.1f}, so two seeds of one setting differ by {seed_ppl[800]:.0%}
at that step). From 0.25 to 1.75 the perplexity grows {ppl800[3] / ppl800[0]:.1f}-fold, far more than the seeds
differ; a single step of $\\beta$ is less sure: from 1.25 to 1.75 the perplexity is only {last_step:.0%} above the
second seed of 1.25, within the seed spread. The test errors ({', '.join(f'{v:.4f}' for v in err800)})
span {err_spread:.1%}, of the same order as the {seed_err[800]:.1%} between two seeds of one setting: with
one run per $\\beta$, no ranking of the errors.""",
    (all(b > a for a, b in zip(ppl800, ppl800[1:])), "in these runs, the larger beta, the more codes in use at step 800"),
    (err_spread < 3 * seed_err[800], "the beta runs' errors differ by about as much as two seeds do"),
    (ppl800[3] / ppl800[0] - 1 > 3 * seed_ppl[800], "from 0.25 to 1.75 the perplexity grows far more than two seeds differ"),
    (0 < last_step < seed_ppl[800], "from 1.25 to 1.75 the perplexity is above the second seed of 1.25 by less than the seed spread"))

# %%
codes_ppl = [r["test_perplexity_final"] for r in short_codes]
codes_err = [r["test_recon_final"] for r in short_codes]
codes_err_spread = max(codes_err) / min(codes_err) - 1
codes_gap = max(codes_ppl) / min(codes_ppl) - 1
say(f"""**4. The best setting: 512 codes, $\\beta = 1.25$, learning rate $10^{{-3}}$.** Only in part. Of the
learning rates, $10^{{-3}}$ is clearly the best (conclusion 1). Of the commitment weights, at step 800
$\\beta = 1.75$ reads {ppl800[3]:.1f} on the logged test curve, above both seeds of 1.25 ({ppl800[2]:.1f} and
{seed1_800:.1f}), but only {last_step:.0%} above the second, less than two seeds of one setting differ
({seed_ppl[800]:.0%}). With one run of 1.75, these runs neither show that 1.75 uses more codes than 1.25 nor
that it does not: they do not settle whether 1.25 is the best we tried by the report's own measure, and
the report tried nothing above 1.75.
Of the codebooks, at step 800 the perplexities of 128, 256 and 512 codes ({', '.join(f'{v:.1f}' for v in codes_ppl)})
differ by {codes_gap:.0%} at most, {'less' if codes_gap < seed_ppl[800] else 'more'} than two seeds of one setting do ({seed_ppl[800]:.0%}).
And the report's reason, "the
perplexity reached over 400", measures codebook use, not reconstruction: on the shapes the
test error at step 800 hardly depends on $\\beta$ or the codebook size (the $\\beta$ runs' errors
differ by at most {err_spread:.0%}, the codebooks' by {codes_err_spread:.0%}).""",
    (ppl800[3] > max(ppl800[2], seed1_800), "at step 800, beta 1.75 reads above both seeds of 1.25"),
    (last_step < seed_ppl[800], "... but above the second by less than two seeds of one setting differ"),
    (max(codes_err_spread, err_spread) < 0.1, "the test error hardly depends on beta or the codebook size"))

# %% [markdown]
# ## 9. Your own sweep: CelebA, an image folder, a cluster
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
# iterations are 360,000 training steps in all, so for a first look use the 8-run design above
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
#   read on the training curve it can pick the random start before the codebook collapses,
#   and on a curve that collapses slowly (small learning rates) even the test curve does.
# - Compare settings by more than one run: two seeds of the same setting set the scale of
#   differences a verdict may rest on.

# %%
most_ppl = max(test_of(r, "perplexity")[1].max() for r in [*long_runs.values(), *seed_runs.values()])
say(f"""- The report's conclusions on 32x32 shapes, with its gradient codebook and without k-means start
  or restarts: learning rate, {'agrees' if lr_slower else 'does not agree'} (a smaller one is slower to a good codebook and
  a low error); codebook size, {codes_verdict[0].lower() + codes_verdict[1:]}; commitment weight, not tested for
  time (800 iterations), but from 0.25 to 1.75 a larger $\\beta$ put more codes to use; the best setting:
  its learning rate is the best; the single run of $\\beta = 1.75$ used more codes than both seeds of 1.25,
  but not by more than two seeds of one setting differ, so the runs do not rank 1.25 against 1.75.
- With the gradient codebook, much of the codebook stays unused: after 3,000 iterations the
  best test perplexity of any run is {most_ppl:.0f}, for codebooks of 128 to 512 codes.""")

# %% [markdown]
# ## Questions to think about
#
# 1. In this sweep a larger commitment weight $\beta$ went with *more* codes in use (section 6
#    and the verdict on $\beta$ above). The commitment term
#    $\beta \lVert z_e - \mathrm{sg}[e] \rVert^2$ pulls each encoder output towards the code
#    it was assigned. How can that help unused codes to be chosen? (Think of what happens to
#    the encoder outputs when nothing holds them near the codebook, and which codes are
#    nearest to outputs that drift far away.)
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

# %%
print(summary())
