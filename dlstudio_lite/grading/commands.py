"""``dlstudio-lite exercises build|release`` and ``dlstudio-lite grade``: the instructor's commands."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .exercises import REPO_ROOT, SOURCE_DIR


def _cmd_build(args: argparse.Namespace) -> int:
    from .exercises import build_all, stale_outputs

    if args.check:
        stale = stale_outputs(args.source, args.root)
        for path in stale:
            print(f"stale: {path}")
        if stale:
            print("run `dlstudio-lite exercises build` to regenerate them")
            return 1
        print("exercises, solutions and hidden tests are up to date")
        return 0
    for path in build_all(args.source, args.root):
        print(f"wrote {path}")
    return 0


def _cmd_release(args: argparse.Namespace) -> int:
    from .release import build_release

    files = build_release(args.out, args.root)
    print(f"wrote the student release ({len(files)} files) to {args.out}")
    print(f"publish it: cd {args.out} && git init && git add . && git commit -m 'Course release'")
    return 0


def _cmd_grade(args: argparse.Namespace) -> int:
    from .grader import grade_submissions
    from .report import write_report
    from .sandbox import Limits

    limits = Limits(notebook_s=args.timeout, cell_s=args.cell_timeout, probe_s=args.probe_timeout,
                    output_chars=args.max_output, memory_bytes=int(args.memory_gib * 2**30))
    batch = grade_submissions(args.submissions, exercise=args.exercise, jobs=args.jobs, limits=limits,
                              trust_submissions=args.trust_submissions, progress=not args.quiet, seed=args.seed)
    paths = write_report(batch, args.out)
    for r in sorted(batch.results, key=lambda r: (r.exercise, r.student)):
        print(f"{r.exercise}  {r.student}: {r.total}/{r.max_total}")
    for x in batch.rejected:
        print(f"not graded: {x.path}: {x.reason}", file=sys.stderr)
    print(f"{len(batch.results)} graded, {len(batch.rejected)} not graded, in {batch.seconds:.1f} s; "
          f"wrote {paths['grades']}, {paths['gradebook']}, {paths['rejected']} and {paths['feedback']}/ "
          f"(hidden inputs from seed {batch.seed}, kept in {paths['seed']})")
    return 0


def add_cli(sub: argparse._SubParsersAction) -> None:
    """Register ``dlstudio-lite exercises ...`` and ``dlstudio-lite grade``."""
    parser = sub.add_parser("exercises", help="build the exercises (instructor) or the student release")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    build = actions.add_parser("build", help="regenerate exercises/, solutions/ and "
                               "instructor/hidden_tests/ from instructor/source/")
    build.add_argument("--source", type=Path, default=SOURCE_DIR, help="folder of *.py sources")
    build.add_argument("--root", type=Path, default=REPO_ROOT,
                       help="folder that receives exercises/, solutions/ and instructor/hidden_tests/")
    build.add_argument("--check", action="store_true",
                       help="write nothing; exit 1 if any generated file is stale")
    build.set_defaults(func=_cmd_build)
    release = actions.add_parser("release", help="write what students get (lectures, package, "
                                 "exercises, data; no solutions, no instructor files) to a new folder")
    release.add_argument("out", type=Path, help="a folder that does not exist yet")
    release.add_argument("--root", type=Path, default=REPO_ROOT, help="the course repository")
    release.set_defaults(func=_cmd_release)

    grade = sub.add_parser(
        "grade", help="grade submitted notebooks, each in its own sandbox",
        description="Grade notebooks (files, or a folder with one sub-folder per student). Each runs "
        "in a bubblewrap sandbox; the hidden checks run here, on the data the sandbox sends back.")
    grade.add_argument("submissions", nargs="+", type=Path)
    grade.add_argument("--out", type=Path, required=True,
                       help="a NEW folder for grades.csv, gradebook.csv, rejected.csv and feedback/")
    grade.add_argument("--exercise", default=None, help="grade every notebook as this exercise")
    grade.add_argument("--jobs", type=int, default=None, help="sandboxes at once (default: CPU cores)")
    grade.add_argument("--timeout", type=float, default=120.0, help="seconds per notebook, all included")
    grade.add_argument("--cell-timeout", type=float, default=60.0, help="seconds per code cell")
    grade.add_argument("--probe-timeout", type=float, default=20.0, help="seconds per probe call")
    grade.add_argument("--memory-gib", type=float, default=4.0, help="memory per sandbox process")
    grade.add_argument("--max-output", type=int, default=100_000, help="output characters kept per notebook")
    grade.add_argument("--trust-submissions", action="store_true",
                       help="grade without a sandbox when none is available (only for work you trust)")
    grade.add_argument("--seed", type=int, default=None,
                       help="seed of the hidden checks' inputs (default: a new one per run; seed.txt keeps it)")
    grade.add_argument("--quiet", action="store_true", help="no progress bar")
    grade.set_defaults(func=_cmd_grade)
