"""The sandbox's mount order: the Python installation stays visible wherever it lives.

bubblewrap applies its mount arguments in order. The one writable tmpfs (the home, with /tmp
and /dev/shm as symlinks into it) comes first, so a virtual environment under /tmp (a CI
clone, say) is bound afterwards, through the symlink, and stays visible; the root is then
made read-only. The argument list is checked, then bwrap builds that root (running `cat`).
"""
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from dlstudio_lite.grading import sandbox


@pytest.mark.skipif(sys.platform != "linux", reason="the sandbox (bubblewrap) is Linux-only")
def test_a_python_installation_under_tmp_stays_visible_and_only_the_scratch_is_writable(monkeypatch):
    clone = Path(tempfile.mkdtemp(dir="/tmp"))
    venv = clone / ".venv"
    venv.mkdir()
    (venv / "marker").write_text("visible")
    monkeypatch.setattr(sandbox.sys, "prefix", str(venv))
    try:
        args = sandbox._bwrap_args("/dev/null", sandbox.Limits(scratch_bytes=2**20))
        binds_at = {args[i + 2]: i for i, a in enumerate(args) if a == "--ro-bind"}
        made_at = {args[i + 1 if a == "--tmpfs" else i + 2]: i for i, a in enumerate(args) if a in ("--tmpfs", "--symlink")}
        assert str(venv) in binds_at, "the virtual environment is bound read-only"
        for folder, position in made_at.items():
            hidden = [p for p, at in binds_at.items() if p.startswith(folder.rstrip("/") + "/") and at < position]
            assert not hidden, f"{folder} is made after, and so hides, {hidden}"
        assert [a for a in args if a == "--tmpfs"] == ["--tmpfs"], "one writable tmpfs, no more"
        if sandbox.bwrap_problem() is None:
            script = (f"cat {venv}/marker; for d in / /dev /tmp /dev/shm {sandbox.HOME}; do "
                      "touch $d/w 2>/dev/null && echo \" $d:rw\"; done")
            out = subprocess.run(["bwrap", *args, "/bin/sh", "-c", script], capture_output=True, text=True, timeout=60)
            assert out.stdout.split() == ["visible", "/tmp:rw", "/dev/shm:rw", f"{sandbox.HOME}:rw"], out.stdout + out.stderr
    finally:
        shutil.rmtree(clone)
