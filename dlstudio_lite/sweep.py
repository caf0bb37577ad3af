"""A hyperparameter sweep as plain data: which points to run, and one table of what came out.

No torch here (``dlstudio-lite sweep`` in ``commands/sweep.py`` runs the points):

    factors = dict([parse_factor("beta=0.25,1.25"), parse_factor("lr=1e-3,1e-4")])
    grid(factors)                         # every combination: 4 points
    one_at_a_time(factors, {"beta": "1.25", "lr": "1e-3"})  # the base, then one change each: 3
    summarize(metrics, history)           # one row: final and best of every logged curve

A point's settings keep the text the user wrote (``"1e-3"``, not ``0.001``), so folder names
and the table read like the command that made them.
"""
from __future__ import annotations

import csv
import io
import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path

from .paths import atomic_write

# Curves where larger is better; for every other curve, smaller is (losses, errors).
HIGHER_IS_BETTER = ("perplexity", "usage", "psnr", "accuracy")
# Logged values that are settings or diagnostics, not results: no "best" for them.
NOT_A_RESULT = ("lr", "grad_norm", "lambda")


@dataclass(frozen=True)
class Point:
    """One run of a sweep. settings: option -> value text; varied: the factor this point
    changes from the base in a one-at-a-time sweep ("base" for the base point, "" in a grid)."""
    settings: dict[str, str]
    varied: str = field(default="", compare=False)

    @property
    def name(self) -> str:
        """Folder name, e.g. ``beta=0.25,lr=1e-3`` (characters a path cannot hold become -)."""
        text = ",".join(f"{k}={v}" for k, v in self.settings.items())
        return re.sub(r"[^\w.,=+-]", "-", text)


def parse_factor(text: str) -> tuple[str, list[str]]:
    """``"beta=0.25,0.75"`` -> ``("beta", ["0.25", "0.75"])``."""
    key, sep, values = text.partition("=")
    key = key.strip().replace("-", "_")
    items = [v.strip() for v in values.split(",")]
    if not sep or not key or not all(items):
        raise ValueError(f"expected KEY=VALUE1,VALUE2,... (e.g. beta=0.25,0.75), got {text!r}")
    if len(set(items)) != len(items):
        raise ValueError(f"{key}: a value is repeated in {text!r}")
    return key, items


def grid(factors: dict[str, list[str]]) -> list[Point]:
    """Every combination of the factors' values; the first factor changes slowest."""
    keys = list(factors)
    return [Point(dict(zip(keys, values))) for values in itertools.product(*factors.values())]


def one_at_a_time(factors: dict[str, list[str]], base: dict[str, str]) -> list[Point]:
    """The base point, then for each factor its other values with every other factor at
    the base (the cheap design of a first look: 1 + sum(n_i - 1) runs instead of prod(n_i))."""
    if set(base) != set(factors):
        raise ValueError(f"the base point must give one value for each factor "
                         f"({', '.join(factors)}); got {', '.join(base) or 'none'}")
    start = {k: base[k] for k in factors}
    points = [Point(start, "base")]
    for key, values in factors.items():
        points += [Point({**start, key: v}, key) for v in values if v != base[key]]
    return points


def steps_to_fraction(curve, fraction: float = 0.95, higher_is_better: bool = True) -> int | None:
    """First step at which ``curve`` (``[(step, value), ...]``) comes within ``fraction`` of
    its best value: ``value >= fraction * best`` (for perplexity: 95% of the largest)."""
    if not curve:
        return None
    values = [v for _, v in curve]
    best = max(values) if higher_is_better else min(values)
    for step, value in curve:
        if (value >= fraction * best) if higher_is_better else (value * fraction <= best):
            return int(step)
    return None  # unreachable for finite values; kept for NaN curves


def summarize(metrics: dict, history: dict[str, list]) -> dict:
    """One table row from a run's ``metrics.json`` and its history
    (``{"train/loss": [(step, value), ...], ...}``): the final numbers of metrics.json as they
    are, and for each logged curve ``<split>_<name>_final``, ``_best``, ``_best_step``; for
    perplexity curves also ``_steps_to_95pct`` (first step at 95% of the best)."""
    row = {k: v for k, v in metrics.items() if not isinstance(v, (dict, list))}
    for key, curve in history.items():
        if not curve:
            continue
        name = key.replace("/", "_")
        row[f"{name}_final"] = curve[-1][1]
        if key.rsplit("/", 1)[-1] in NOT_A_RESULT:
            continue
        higher = any(word in key for word in HIGHER_IS_BETTER)
        step, best = (max if higher else min)(curve, key=lambda sv: sv[1])
        row[f"{name}_best"], row[f"{name}_best_step"] = best, int(step)
        if "perplexity" in key:
            row[f"{name}_steps_to_95pct"] = steps_to_fraction(curve, 0.95, True)
    return row


def write_table(rows: list[dict], path: str | Path) -> Path:
    """A CSV with one row per point; the columns are the union of the rows' keys in the
    order they first appear (a failed point leaves its metric cells empty)."""
    columns = list(dict.fromkeys(k for row in rows for k in row))
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    return atomic_write(path, lambda f: f.write(text.getvalue().encode()))


def read_table(path: str | Path) -> list[dict]:
    """The rows of a sweep's CSV, numbers as floats (ints stay ints), empty cells as None."""
    def value(text: str):
        if text == "":
            return None
        for kind in (int, float):
            try:
                return kind(text)
            except ValueError:
                pass
        return {"True": True, "False": False}.get(text, text)
    with open(path, newline="") as f:
        return [{k: value(v) for k, v in row.items()} for row in csv.DictReader(f)]
