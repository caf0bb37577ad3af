"""``dlstudio-lite exercises build``: generate exercises/, solutions/ and the hidden tests."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..exercises import REPO_ROOT, SOURCE_DIR, build_all, stale_outputs


def _cmd_build(args: argparse.Namespace) -> int:
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


def add_cli(sub: argparse._SubParsersAction) -> None:
    """Register ``dlstudio-lite exercises build``."""
    parser = sub.add_parser("exercises", help="build student exercises, solutions and hidden tests")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    build = actions.add_parser("build", help="regenerate exercises/, solutions/ and "
                               "instructor/hidden_tests/ from instructor/source/")
    build.add_argument("--source", type=Path, default=SOURCE_DIR, help="folder of *.py sources")
    build.add_argument("--root", type=Path, default=REPO_ROOT,
                       help="folder that receives exercises/, solutions/ and instructor/hidden_tests/")
    build.add_argument("--check", action="store_true",
                       help="write nothing; exit 1 if any generated file is stale")
    build.set_defaults(func=_cmd_build)
