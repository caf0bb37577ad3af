"""``dlstudio-lite sweep MODEL``: a grid of ordinary ``train`` runs and one table of results.

Each point is the command ``dlstudio-lite train MODEL [your flags] [the point's flags]
--out OUT/<point name>``, so a sweep trains nothing that ``train`` would not. With
``--jobs 1`` the points run one after another in this process (torch is imported once);
with ``--jobs N`` each point is its own process, N at a time, from a
``concurrent.futures`` pool, with ``--threads`` set so that N runs share the cores, and, when
there are GPUs, one GPU per running point (``CUDA_VISIBLE_DEVICES``, round robin).

A point whose folder holds a finished run (``metrics.json`` of a run that was not
interrupted) is skipped, so a stopped sweep continues where it was when started again; an
unfinished run with a checkpoint resumes from it. ``OUT/sweep.csv`` gets one row per
point (see ``dlstudio_lite.sweep.summarize``).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import queue
import shlex
import sys
import textwrap
import time
import traceback
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from .. import sweep
from ..config import QUICK_ENV, quick_mode
from . import options

FINISHED, FAILED, MISSING = "finished", "failed", "missing"
POINT_FILE = "sweep_point.json"  # the point's settings, its command, its time
SMALL_FILES = ("config.json", "metrics.json", "history.json", POINT_FILE, "train.log")

EPILOG = """\
examples:
  # the seed's grid (36 runs): beta x learning rate x codebook size
  dlstudio-lite sweep vqvae --grid beta=0.25,0.75,1.25,1.75 --grid lr=1e-3,1e-4,1e-5 \\
      --grid num_codes=128,256,512 --out runs/sweep --jobs 2 --steps 2000 --quantizer gradient
  # one factor at a time around a base point (1 + 3 + 2 + 2 = 8 runs)
  dlstudio-lite sweep vqvae --grid beta=0.25,0.75,1.25,1.75 --grid lr=1e-3,1e-4,1e-5 \\
      --grid num_codes=128,256,512 --base beta=1.25 --base lr=1e-3 --base num_codes=512 \\
      --out runs/ofat --steps 2000
  # a VAE's KL weight
  dlstudio-lite sweep vae --grid beta=0.01,0.1,1 --out runs/vae_beta --steps 1000

on a cluster (SLURM job array; one line of points.txt per task):
  dlstudio-lite sweep vqvae --grid ... --out runs/sweep --steps 2000 --print-commands > points.txt
  sbatch --array=1-$(wc -l < points.txt)%16 --gpus=1 --wrap \\
      'eval "$(sed -n ${SLURM_ARRAY_TASK_ID}p points.txt)"'
  # when the array is done (or to see how far it got): the table only, nothing trained
  dlstudio-lite sweep vqvae --grid ... --out runs/sweep --steps 2000 --collect
"""


def add_cli(sub, train_sub, main) -> None:
    """Register ``dlstudio-lite sweep``; ``train_sub`` holds the ``train`` targets (read when
    the sweep runs, so models registered later are sweepable too); ``main`` is the command
    line's entry point, which runs a point in this process."""
    p = sub.add_parser(
        "sweep", help="train a grid of settings and tabulate the results",
        description=textwrap.fill("Run `dlstudio-lite train MODEL` once per point of a grid of settings, each "
        "in OUT/<settings>, and write OUT/sweep.csv: one row per point with its settings, the "
        "final test metrics, the final and best value of every logged curve, and the step at "
        "which perplexity first reached 95% of its best. Any flag that `train MODEL` accepts "
        "can be added and applies to every point. Finished points are skipped when the sweep "
        "is run again.", 88), epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="a model of `dlstudio-lite train` (vqvae, vae, ...)")
    p.add_argument("--grid", action="append", required=True, metavar="KEY=V1,V2,...",
                   help="a factor: an option of `train MODEL` (flag name without --, e.g. lr, "
                        "num_codes, or any constructor argument) and its values; repeat for "
                        "more factors. Without --base: every combination")
    p.add_argument("--base", action="append", default=[], metavar="KEY=VALUE",
                   help="one factor at a time: the base point (one value per factor); each "
                        "other point changes one factor from it")
    p.add_argument("--out", required=True, help="sweep folder: one sub-folder per point, sweep.csv")
    p.add_argument("--jobs", type=options.positive_int, default=1,
                   help="points run at the same time, each in its own process (default: 1, in "
                        "this process)")
    p.add_argument("--threads", type=options.positive_int, default=None,
                   help="torch threads per point (default: the CPU count divided by --jobs)")
    p.add_argument("--nproc-per-point", type=options.positive_int, default=1, metavar="N",
                   help="processes per point: each point runs under `torchrun --standalone "
                        "--nproc_per_node N` (DistributedDataParallel; per-rank batch), with N "
                        "GPUs when there are GPUs (default: 1, no torchrun)")
    p.add_argument("--print-commands", action="store_true",
                   help="print one shell command per point (for a job array) and run nothing")
    p.add_argument("--collect", action="store_true",
                   help="only write the table from the folders as they are; train nothing")
    p.add_argument("--results-only", action="store_true",
                   help="after each point, keep only its JSON files and log (no checkpoint, no "
                        "pictures): for shipping results or for long sweeps on a small disk")
    p.set_defaults(func=lambda args: run_sweep(args, train_sub, main), extra_args=True)


# --- building the points' commands ---------------------------------------------------------

def _flag(parser, key: str, value: str, model: str) -> list[str]:
    """The flags of ``train MODEL`` that set option ``key`` to ``value``."""
    actions = {a.dest: a for a in parser._actions if a.option_strings}
    if key in ("out", "resume", "help"):
        raise ValueError(f"--grid {key} is not a setting; a sweep sets it for each point")
    action = actions.get(key)
    if action is None:
        from ..checkpoint import MODELS
        from .options import parameters
        known = parameters(MODELS[model]) if model in MODELS and "hparams" in actions else {}
        if key not in known:
            names = sorted({*actions, *known} - {"hparams", "help", "out", "resume"})
            raise ValueError(f"train {model} has no option {key!r}; it accepts "
                             f"{', '.join(names)}")
        return ["--set", f"{key}={value}"]  # a constructor argument without a flag
    on = value.strip().lower() in ("1", "true", "yes", "on")
    if action.nargs == 0:  # a switch: --kmeans-init, --no-progress
        wanted = on if action.const is not False else not on
        return [action.option_strings[0]] if wanted else []
    return [action.option_strings[0], *value.split()]


def point_argv(parser, model: str, point: sweep.Point, flags: list[str], folder: Path,
               threads: int | None) -> list[str]:
    """``train MODEL ...`` for one point; the point's flags come last, so they win."""
    argv = ["train", model, *flags]
    for key, value in point.settings.items():
        argv += _flag(parser, key, value, model)
    if threads and "threads" in {a.dest for a in parser._actions} and "--threads" not in flags:
        argv += ["--threads", str(threads)]
    return [*argv, "--no-progress", "--out", str(folder)]


def _key(argv: list[str]) -> list[str]:
    """The part of a command that decides a run's result (not its threads or folder)."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in ("--threads", "--out"):
            skip = True
        elif arg != "--resume":
            out.append(arg)
    return out


def status_of(folder: Path) -> str:
    metrics = folder / "metrics.json"
    if metrics.exists() and not json.loads(metrics.read_text()).get("interrupted", False):
        return FINISHED
    return FAILED if (folder / POINT_FILE).exists() else MISSING


# --- running ---------------------------------------------------------------------------------

def _run_here(argv: list[str], log: Path, main) -> int:
    """``dlstudio-lite ARGV`` in this process (through ``main``), its output into ``log``."""
    with open(log, "a") as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
        try:
            return main(argv)
        except Exception:  # a failed point is recorded; the sweep goes on
            traceback.print_exc()
            return 1


def launcher(nproc: int) -> list[str]:
    """The program that runs a point's ``dlstudio-lite`` arguments: the command line itself,
    or, for several processes, the command line under ``torchrun`` on this machine."""
    if nproc <= 1:
        return [sys.executable, "-m", "dlstudio_lite.cli"]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc_per_node={nproc}", "-m", "dlstudio_lite.cli"]


def _run_process(argv: list[str], log: Path, env: dict, nproc: int = 1) -> tuple[int, float | None]:
    """``dlstudio-lite ARGV`` as a child process; returns its exit code and CPU seconds."""
    import subprocess
    with open(log, "a") as f:
        proc = subprocess.Popen([*launcher(nproc), *argv],
                                stdout=f, stderr=subprocess.STDOUT, env=env)
        if not hasattr(os, "wait4"):  # Windows: no resource usage of a child
            return proc.wait(), None
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        return proc.returncode, usage.ru_utime + usage.ru_stime


def _slots(jobs: int, threads: int, per_point: int = 1) -> "queue.Queue[dict]":
    """One environment per concurrent point: its thread count and, with GPUs, its GPU."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    gpus = os.environ.get("CUDA_VISIBLE_DEVICES")
    if gpus is None:
        import torch
        gpus = ",".join(map(str, range(torch.cuda.device_count())))
    gpus = [g for g in gpus.split(",") if g.strip()]
    slots: queue.Queue[dict] = queue.Queue()
    for i in range(jobs):
        mine = [gpus[(i * per_point + k) % len(gpus)] for k in range(per_point)] if gpus else []
        slots.put({**env, "CUDA_VISIBLE_DEVICES": ",".join(mine)} if gpus else env)
    return slots


def _run_point(argv, folder: Path, point: sweep.Point, slots, nproc: int = 1, main=None) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    if (folder / "checkpoint.pt").exists():
        argv = [*argv, "--resume"]  # an unfinished run continues from its checkpoint
    start, cpu = time.perf_counter(), time.process_time()
    if slots is None:
        code = _run_here(argv, folder / "train.log", main)
        cpu_seconds = time.process_time() - cpu
    else:
        env = slots.get()
        try:
            code, cpu_seconds = _run_process(argv, folder / "train.log", env, nproc)
        finally:
            slots.put(env)
    record = {"settings": point.settings, "varied": point.varied, "returncode": code,
              "seconds": round(time.perf_counter() - start, 2),
              "cpu_seconds": None if cpu_seconds is None else round(cpu_seconds, 2),
              "command": shlex.join(["dlstudio-lite", *argv])}
    (folder / POINT_FILE).write_text(json.dumps(record, indent=2) + "\n")
    if (folder / "history.json").exists() is False and (folder / "checkpoint.pt").exists():
        _history_from_checkpoint(folder)
    return status_of(folder)


def _history_from_checkpoint(folder: Path) -> None:
    """history.json for commands that keep their history only in the checkpoint."""
    from ..checkpoint import load_checkpoint
    history = load_checkpoint(folder / "checkpoint.pt", map_location="cpu").get("history", {})
    (folder / "history.json").write_text(json.dumps(history) + "\n")


def _keep_results_only(folder: Path) -> None:
    for path in folder.iterdir():
        if path.is_file() and path.name not in SMALL_FILES:
            path.unlink()


def row_of(point: sweep.Point, folder: Path, design_varied: bool) -> dict:
    """The table row of one point: settings, status, time, then the run's numbers."""
    row = {"point": point.name, **({"varied": point.varied} if design_varied else {}),
           **point.settings, "status": status_of(folder)}
    record = folder / POINT_FILE
    if record.exists():
        info = json.loads(record.read_text())
        row.update(seconds=info.get("seconds"), cpu_seconds=info.get("cpu_seconds"))
    if row["status"] == FINISHED:
        metrics = json.loads((folder / "metrics.json").read_text())
        history_file = folder / "history.json"
        history = json.loads(history_file.read_text()) if history_file.exists() else {}
        row.update(sweep.summarize(metrics, history))
    return row


def run_sweep(args, train_sub, main) -> int:
    """The job behind ``dlstudio-lite sweep``; returns 1 when a point failed."""
    if args.model not in train_sub.choices:
        raise ValueError(f"sweep: unknown model {args.model!r}; choose one of "
                         f"{', '.join(train_sub.choices)}")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ValueError("run the sweep itself as one process, not under torchrun: "
                         "--nproc-per-point N starts each of its points under torchrun")
    parser = train_sub.choices[args.model]
    factors = dict(sweep.parse_factor(text) for text in args.grid)
    if len(factors) != len(args.grid):
        raise ValueError("each factor may be given once with --grid")
    if args.base:
        base = dict(sweep.parse_factor(text) for text in args.base)
        bad = [k for k, v in base.items() if len(v) != 1]
        if bad:
            raise ValueError(f"--base takes one value per factor; {', '.join(bad)} got several")
        for key, (value,) in base.items():
            if key in factors and value not in factors[key]:
                factors[key].insert(0, value)  # the base value is a point of its factor
        points = sweep.one_at_a_time(factors, {k: v[0] for k, v in base.items()})
    else:
        points = sweep.grid(factors)
    out = Path(args.out)
    # Printed commands run elsewhere: they set threads only when asked to.
    threads = args.threads or (None if args.print_commands
                               else max(1, (os.cpu_count() or 1) // (args.jobs * args.nproc_per_point)))
    commands = []
    for point in points:
        argv = point_argv(parser, args.model, point, args.extra, out / point.name, threads)
        try:  # every point's flags are checked before anything trains
            parser.parse_args(argv[2:])
        except SystemExit:
            raise ValueError(f"point {point.name}: `train {args.model}` rejects its flags "
                             f"(see the message above)") from None
        commands.append(argv)

    if args.print_commands:
        prefix = f"{QUICK_ENV}=1 " if quick_mode() else ""
        for argv in commands:
            program = (["dlstudio-lite"] if args.nproc_per_point <= 1 else
                       ["torchrun", "--standalone", f"--nproc_per_node={args.nproc_per_point}",
                        "-m", "dlstudio_lite.cli"])
            print(prefix + shlex.join([*program, *argv]))
        return 0

    todo, finished = [], 0
    for point, argv in zip(points, commands):
        folder = out / point.name
        if status_of(folder) == FINISHED:
            finished += 1
            record = folder / POINT_FILE
            done = json.loads(record.read_text())["command"] if record.exists() else None
            if done and _key(shlex.split(done)[1:]) != _key(argv):
                raise ValueError(f"{folder} holds a finished run of another command "
                                 f"({done}); use a new --out or delete that folder")
        elif not args.collect:
            todo.append((point, argv))
    print(f"sweep: {len(points)} points, {finished} already finished, {len(todo)} to run"
          + (f", {args.jobs} at a time" if todo else ""),
          file=sys.stderr)

    failed = _run_all(todo, out, args, threads, main)
    rows = [row_of(p, out / p.name, bool(args.base)) for p in points]
    table = sweep.write_table(rows, out / "sweep.csv")
    print(f"sweep: table of {len(rows)} points in {table}"
          + (f"; failed: {', '.join(failed)} (see their train.log)" if failed else ""),
          file=sys.stderr)
    return 1 if failed else 0


def _run_all(todo, out: Path, args, threads: int, main) -> list[str]:
    # A command's bar is text on stderr, also when a notebook calls the command: a widget
    # would be saved frozen at its start.
    from tqdm import tqdm
    failed: list[str] = []
    if not todo:
        return failed
    bar = tqdm(total=len(todo), desc="sweep", unit="point", file=sys.stderr)

    def done(point: sweep.Point, status: str) -> None:
        if status != FINISHED:
            failed.append(point.name)
        elif args.results_only:
            _keep_results_only(out / point.name)
        bar.set_postfix_str(point.name)
        bar.update()

    try:
        if args.jobs == 1 and args.nproc_per_point == 1:  # in this process and its main thread, where Ctrl-C saves a checkpoint
            for point, argv in todo:
                done(point, _run_point(argv, out / point.name, point, None, main=main))
                if json.loads((out / point.name / POINT_FILE).read_text())["returncode"] == 0 \
                        and status_of(out / point.name) != FINISHED:
                    break  # the run was interrupted (Ctrl-C): stop the sweep too
            return failed
        slots = _slots(args.jobs, threads, args.nproc_per_point)
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            # The threads only wait for their child process; Ctrl-C reaches the children too
            # (they save and stop), and the points not started yet are cancelled.
            futures = {pool.submit(_run_point, argv, out / p.name, p, slots, args.nproc_per_point): p
                       for p, argv in todo}
            try:
                for future in as_completed(futures):
                    done(futures[future], future.result())
            except KeyboardInterrupt:
                for future in futures:
                    future.cancel()
                raise
        return failed
    finally:
        bar.close()
