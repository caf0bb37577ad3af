"""``dlstudio-lite grade``: grade a batch of submitted exercise notebooks."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..grade import HIDDEN_TESTS_DIR, Limits, grade_submissions, write_feedback, write_grades_csv


def _cmd_grade(args: argparse.Namespace) -> int:
    out = Path(args.out)
    feedback = Path(args.feedback) if args.feedback else out.parent / "feedback"
    limits = Limits(notebook_s=args.timeout, cell_s=min(args.cell_timeout, args.timeout),
                    test_s=args.test_timeout, output_chars=args.max_output)
    results = grade_submissions(args.submissions, exercise=args.exercise, tests_dir=args.tests,
                                jobs=args.jobs, limits=limits, progress=not args.quiet,
                                protect=[out.resolve(), feedback.resolve()])
    write_grades_csv(results, out)
    write_feedback(results, feedback)
    for r in sorted(results, key=lambda r: (r.exercise, r.student)):
        print(f"{r.student:24s} {r.exercise:16s} {r.total:3d} / {r.max_total}  ({r.seconds:.1f} s)")
    print(f"wrote {out} and {len(results)} feedback files under {feedback}")
    return 0


def add_cli(sub: argparse._SubParsersAction) -> None:
    """Register ``dlstudio-lite grade``."""
    p = sub.add_parser("grade", help="grade submitted exercise notebooks with the hidden tests")
    p.add_argument("submissions", nargs="+", help="notebooks, or folders of notebooks (*.ipynb)")
    p.add_argument("--out", required=True, help="CSV file to write (one row per student)")
    p.add_argument("--feedback", help="folder for the per-student feedback (default: feedback/ "
                   "next to --out)")
    p.add_argument("--exercise", help="exercise name for all submissions (default: read from "
                   "each notebook's metadata)")
    p.add_argument("--tests", default=str(HIDDEN_TESTS_DIR), help="folder of hidden tests (*.json)")
    p.add_argument("--jobs", type=int, default=None, help="notebooks graded at once (default: CPU cores)")
    p.add_argument("--timeout", type=float, default=Limits.notebook_s,
                   help="seconds for all of one student's cells")
    p.add_argument("--cell-timeout", type=float, default=Limits.cell_s, help="seconds per cell")
    p.add_argument("--test-timeout", type=float, default=Limits.test_s, help="seconds per hidden test")
    p.add_argument("--max-output", type=int, default=Limits.output_chars,
                   help="characters of output kept per notebook")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_grade)
