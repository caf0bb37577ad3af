"""A v1 cgroup per sandbox (processes, memory, CPU accounting), where the grader may create one.

Used by :mod:`.sandbox`: the child writes its pid to the cgroups' ``cgroup.procs`` between
fork and exec (through descriptors opened here), so everything it starts is counted, capped
and killed with it. Without write access to ``/sys/fs/cgroup`` (a normal user, cgroup v2
only) the object is inert and the rlimits of :mod:`.sandbox` are the only caps.
"""
from __future__ import annotations

import os
import signal
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .sandbox import Limits


class Cgroup:
    """A v1 cgroup (pids + memory) for one sandbox, when the grader may create one; else inert."""

    ROOTS = {"pids": Path("/sys/fs/cgroup/pids"), "memory": Path("/sys/fs/cgroup/memory")}

    def __init__(self, limits: Limits):
        self.dirs: list[Path] = []
        name = f"dlstudio-lite-grade/{uuid.uuid4().hex}"
        try:
            for kind, root in self.ROOTS.items():
                if not root.is_dir() or not os.access(root, os.W_OK):
                    raise OSError(f"{root} is not writable")
                d = root / name
                d.mkdir(parents=True)
                self.dirs.append(d)
                if kind == "pids":
                    (d / "pids.max").write_text(str(limits.processes))
                else:
                    (d / "memory.limit_in_bytes").write_text(str(limits.memory_bytes))
        except OSError:
            self.close()
            self.dirs = []
        # Optional: CPU time of the sandbox, for benchmarks (cpuacct.usage, nanoseconds).
        acct = Path("/sys/fs/cgroup/cpuacct")
        if self.dirs and acct.is_dir() and os.access(acct, os.W_OK):
            try:
                d = acct / name
                d.mkdir(parents=True)
                self.dirs.append(d)
            except OSError:
                pass

    @classmethod
    def inert(cls) -> "Cgroup":
        """A cgroup object that does nothing (a run without the sandbox)."""
        cgroup = cls.__new__(cls)
        cgroup.dirs = []
        return cgroup

    def cpu_seconds(self) -> float | None:
        for d in self.dirs:
            if (d / "cpuacct.usage").is_file():
                try:
                    return int((d / "cpuacct.usage").read_text()) / 1e9
                except (OSError, ValueError):
                    return None
        return None

    @property
    def active(self) -> bool:
        return bool(self.dirs)

    def open_procs(self) -> list[int]:
        """Descriptors of the cgroups' ``cgroup.procs``, opened here so the child only writes."""
        return [os.open(d / "cgroup.procs", os.O_WRONLY) for d in self.dirs]

    def kill(self) -> None:
        for _ in range(50):
            pids = set()
            for d in self.dirs:
                try:
                    pids |= {int(p) for p in (d / "cgroup.procs").read_text().split()}
                except OSError:
                    pass
            if not pids:
                return
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.02)

    def close(self) -> None:
        self.kill()
        for d in self.dirs:
            for _ in range(50):
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.02)
