"""Benchmark: grade a class's batch of notebooks, each in its own bubblewrap sandbox, two at a time.

The batch is what a class hands in: for each exercise, five solutions and five blank
notebooks (60 for six exercises, 70 for seven). Reports the wall time of the whole batch (discovery, sandboxes,
verdicts, CSVs and feedback), seconds per notebook, the grader's peak memory (its own RSS,
not the sandboxes') and the machine's load, because other work on the cores slows every
sandbox down. Run from the repository root:

    python benchmarks/bench_grade.py [--jobs 2] [--per-kind 5]
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dlstudio_lite.grading import grader, report  # noqa: E402
from dlstudio_lite.grading.exercises import REPO_ROOT  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--per-kind", type=int, default=5, help="solutions (and blanks) per exercise")
    parser.add_argument("--exercises", type=int, default=None, help="only the first N exercises (6: the 60-notebook batch)")
    args = parser.parse_args()
    names = sorted(p.stem for p in (REPO_ROOT / "solutions").glob("*.ipynb"))[: args.exercises]
    root = Path(tempfile.mkdtemp(prefix="bench-grade-"))
    try:
        subs = root / "submissions"
        expected = {}
        for name in names:
            for kind, folder in (("solution", "solutions"), ("blank", "exercises")):
                for i in range(args.per_kind):
                    student = f"{kind}{i}_{name}"
                    (subs / student).mkdir(parents=True)
                    shutil.copy(REPO_ROOT / folder / f"{name}.ipynb", subs / student / f"{name}.ipynb")
                    expected[student] = kind
        load_before = os.getloadavg()
        start = time.perf_counter()
        batch = grader.grade_submissions([subs], jobs=args.jobs)
        report.write_report(batch, root / "out")
        seconds = time.perf_counter() - start
        load_after = os.getloadavg()
        peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        wrong = [r.student for r in batch.results
                 if (r.total == r.max_total) != (expected[r.student] == "solution")]
        per = sorted(r.seconds for r in batch.results)
        print(f"{len(batch.results)} notebooks, {args.jobs} jobs, {os.cpu_count()} CPUs: "
              f"{seconds:.1f} s for the batch ({seconds / len(batch.results):.2f} s per notebook)")
        print(f"sandbox time per notebook: median {per[len(per) // 2]:.2f} s, max {per[-1]:.2f} s")
        cpu = [r.cpu_seconds for r in batch.results if r.cpu_seconds is not None]
        if len(cpu) == len(batch.results):
            print(f"CPU time in the sandboxes: {sum(cpu):.1f} s in all ({sum(cpu) / len(cpu):.2f} s per notebook); "
                  f"on {args.jobs} otherwise idle cores the batch needs at least {sum(cpu) / args.jobs:.1f} s")
        grader_cpu = resource.getrusage(resource.RUSAGE_SELF)
        print(f"grader's own CPU time: {grader_cpu.ru_utime + grader_cpu.ru_stime:.1f} s")
        print(f"grader peak RSS: {peak_mib:.0f} MiB")
        print(f"load average (1 min) before/after: {load_before[0]:.1f}/{load_after[0]:.1f}")
        print("scores as expected" if not wrong else f"UNEXPECTED SCORES: {wrong}")
        for r in batch.results:
            if r.student in wrong:
                print(f"  {r.student}: {r.total}/{r.max_total}", [q.message[:200] for q in r.questions], r.notes[:3])
        return 1 if wrong else 0
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
