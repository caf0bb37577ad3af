"""The sandbox's mount order: the Python installation stays visible wherever it lives.

bubblewrap applies its mount arguments in order, so a tmpfs on /tmp mounted after the
read-only bind of a virtual environment under /tmp (a CI clone, say) would hide it and every
submission would fail to start. No sandbox is started here: only the argument list is checked.
"""
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

from dlstudio_lite.grading import sandbox


@pytest.mark.skipif(sys.platform != "linux", reason="the sandbox (bubblewrap) is Linux-only")
def test_scratch_tmpfs_is_mounted_before_the_python_installation(monkeypatch):
    clone = Path(tempfile.mkdtemp(dir="/tmp"))
    venv = clone / ".venv"
    venv.mkdir()
    monkeypatch.setattr(sandbox.sys, "prefix", str(venv))
    try:
        args = sandbox._bwrap_args("/tmp/job.pt", sandbox.Limits())
    finally:
        shutil.rmtree(clone)
    tmpfs_at = {args[i + 1]: i for i, a in enumerate(args) if a == "--tmpfs"}
    binds_at = {args[i + 2]: i for i, a in enumerate(args) if a == "--ro-bind"}
    assert str(venv) in binds_at, "the virtual environment is bound read-only"
    for folder, position in tmpfs_at.items():
        hidden = [p for p, at in binds_at.items() if p.startswith(folder.rstrip("/") + "/") and at < position]
        assert not hidden, f"tmpfs {folder} is mounted after, and so hides, {hidden}"
