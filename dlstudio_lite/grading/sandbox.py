"""One sandbox per submission: bubblewrap namespaces, resource limits, and a kill at the deadline.

:func:`run_sandboxed` starts ``python -I runner.py`` (see :mod:`.runner`) inside
``bwrap`` with

* new user, PID, network, IPC, UTS and cgroup namespaces (``--unshare-all``), no
  capabilities, no further user namespaces, a new terminal session, and
  ``--die-with-parent``;
* a root made only of read-only binds of the Python installation (``/usr``, the base
  prefix, the virtual environment), the package and the runner, plus size-capped tmpfs
  folders: the student's home (their working folder), ``/tmp`` and ``/dev/shm``; a fresh
  ``/proc`` that shows only the sandbox's processes, and a minimal ``/dev``;
* a clean environment; bwrap's arguments passed through a pipe (``--args``), so that
  ``/proc/1/cmdline`` shows no host paths;
* ``setrlimit`` limits on address space, CPU time, file size, open files and core dumps,
  and, where the grader may create cgroups (v1, as root), a cgroup per sandbox capping
  memory and the number of processes;
* the student's output written to a file the grader opened, so the file-size limit caps
  it while it streams in; results come back over a pipe, read with a size cap.

At the deadline (or when the result pipe overflows) the bwrap process group is killed;
PID 1 of the sandbox dies with it and the kernel kills every process left in the PID
namespace, daemons included; the cgroup's processes are killed as well.
"""
from __future__ import annotations

import os
import resource
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

RUNNER = Path(__file__).with_name("runner.py")
PACKAGE_DIR = Path(__file__).resolve().parents[1]  # dlstudio_lite/
HOME = "/home/student"
RUN_DIR = "/run/dlstudio-lite"


class SandboxUnavailable(RuntimeError):
    """No usable sandbox on this machine; the message names the fix."""


@dataclass(frozen=True)
class Limits:
    """Limits of one graded notebook (seconds, bytes)."""

    notebook_s: float = 120.0     # the whole sandbox: startup, the student's cells and the probes
    cell_s: float = 60.0          # one student cell
    probe_s: float = 20.0         # one probe (one call of a student function and its gradients)
    memory_bytes: int = 4 * 2**30  # address space of each process (torch reserves ~1.5 GiB)
    output_bytes: int = 1_000_000  # the student's stdout+stderr file
    output_chars: int = 100_000    # what the feedback keeps of it
    result_bytes: int = 64 * 2**20  # what the grader reads from the result pipe
    processes: int = 64            # tasks (processes and threads) in the sandbox's cgroup
    scratch_bytes: int = 256 * 2**20  # each tmpfs: the home folder, /tmp, /dev/shm

    def __post_init__(self):
        for name in ("notebook_s", "cell_s", "probe_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"Limits.{name} must be a positive number of seconds, got {getattr(self, name)!r}")
        for name in ("memory_bytes", "output_bytes", "result_bytes", "processes", "scratch_bytes"):
            if not (isinstance(getattr(self, name), int) and getattr(self, name) > 0):
                raise ValueError(f"Limits.{name} must be a positive int, got {getattr(self, name)!r}")
        if self.output_chars < 0:
            raise ValueError(f"Limits.output_chars must be >= 0, got {self.output_chars!r}")


@dataclass
class RunResult:
    frames: list[bytes] = field(default_factory=list)  # raw result frames, unparsed
    output: str = ""            # the student's stdout/stderr (capped)
    problems: list[str] = field(default_factory=list)  # timeouts, kills, overflow
    seconds: float = 0.0
    cpu_seconds: float | None = None  # CPU time of everything in the sandbox (cgroup v1 cpuacct)


# ----------------------------------------------------------------------------- capabilities

_BWRAP_OK: dict[str, str | None] = {}


def bwrap_problem() -> str | None:
    """``None`` if bubblewrap can build the sandbox here, else why not and how to fix it."""
    if "answer" in _BWRAP_OK:
        return _BWRAP_OK["answer"]
    answer = None
    if sys.platform != "linux":
        answer = (f"sandboxing needs Linux with bubblewrap; this is {sys.platform}. Grade inside a "
                  "Linux VM or container with bubblewrap installed")
    elif shutil.which("bwrap") is None:
        answer = ("bubblewrap is not installed: `sudo apt-get install bubblewrap` (Debian/Ubuntu), "
                  "`sudo dnf install bubblewrap` (Fedora)")
    else:
        probe = subprocess.run(["bwrap", "--unshare-all", "--unshare-user", "--disable-userns",
                                "--die-with-parent", "--cap-drop", "ALL", "--ro-bind", "/", "/",
                                "--proc", "/proc", "--dev", "/dev", "--size", "1048576", "--tmpfs", "/tmp", "true"],
                               capture_output=True, text=True, timeout=30)
        if probe.returncode != 0:
            answer = (f"bubblewrap cannot create namespaces here ({probe.stderr.strip()[:300]}); "
                      "allow unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1, "
                      "or the AppArmor profile for bwrap on Ubuntu 24.04)")
    _BWRAP_OK["answer"] = answer
    return answer


def _bind_roots() -> list[str]:
    """Read-only folders the Python installation needs (deduplicated, no nesting)."""
    wanted = ["/usr", "/lib", "/lib32", "/lib64", "/bin", "/sbin", "/etc/ld.so.cache", "/etc/alternatives",
              sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix]
    real = []
    for p in wanted:
        if os.path.lexists(p) and not os.path.islink(p):
            rp = os.path.realpath(p)
            if rp not in real:
                real.append(rp)
    real.sort(key=len)
    out = []
    for p in real:
        if not any(p == q or p.startswith(q.rstrip("/") + "/") for q in out):
            out.append(p)
    return out


def _bwrap_args(job_file: str, limits: Limits) -> list[str]:
    args = ["--unshare-all", "--unshare-user", "--die-with-parent", "--new-session", "--cap-drop", "ALL",
            "--disable-userns", "--uid", "1000", "--gid", "1000"]
    # The scratch tmpfs folders come first: a later tmpfs on /tmp would hide a virtual
    # environment or a checkout that lives under /tmp (CI clones there), so the read-only
    # binds of the Python installation are mounted on top of them, not under them.
    size = str(limits.scratch_bytes)
    args += ["--proc", "/proc", "--dev", "/dev",
             "--size", size, "--tmpfs", "/dev/shm",
             "--size", size, "--tmpfs", "/tmp",
             "--size", size, "--tmpfs", HOME]
    for p in _bind_roots():
        args += ["--ro-bind", p, p]
    for link in ("/lib", "/lib64", "/bin", "/sbin"):  # merged-/usr systems: keep the symlinks
        if os.path.islink(link):
            args += ["--symlink", os.readlink(link), link]
    # The virtual environment's interpreter link may point outside the prefix (pyenv, /usr/local).
    exe = os.path.realpath(sys.executable)
    if not any(exe.startswith(p.rstrip("/") + "/") for p in _bind_roots()):
        args += ["--ro-bind", exe, exe]
    args += [
             "--ro-bind", str(RUNNER), f"{RUN_DIR}/runner.py",
             "--ro-bind", str(PACKAGE_DIR), f"{RUN_DIR}/pkg/{PACKAGE_DIR.name}",
             "--ro-bind", job_file, f"{RUN_DIR}/job.pt",
             "--chdir", HOME, "--clearenv"]
    for key, value in sandbox_env(HOME).items():
        args += ["--setenv", key, value]
    return args


def sandbox_env(home: str) -> dict[str, str]:
    return {"HOME": home, "PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8",
            "TMPDIR": home, "MPLCONFIGDIR": f"{home}/.config/matplotlib", "MPLBACKEND": "Agg",
            "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "DLSTUDIO_LITE_QUICK": "1",
            "PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": "0",
            # glibc reserves 64 MiB of address space per thread arena; torch starts threads
            # (autograd), which would spend the address-space limit on reservations.
            "MALLOC_ARENA_MAX": "2"}


# ----------------------------------------------------------------------------- cgroups (v1)


class _Cgroup:
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


# ----------------------------------------------------------------------------- running


def _limit_child(limits: Limits, procs_fds: list[int]):
    """The child's set-up before exec: join the cgroup, set the limits.

    Runs between fork and exec while the grader has other threads, so it only makes
    system calls (no imports, no file objects, no locks).
    """
    cpu = int(limits.notebook_s) + 5
    nproc = _nproc_budget(limits) if os.getuid() != 0 else 0

    def preexec():
        for fd in procs_fds:
            os.write(fd, b"%d" % os.getpid())
        for res, value in ((resource.RLIMIT_AS, limits.memory_bytes), (resource.RLIMIT_CPU, cpu),
                           (resource.RLIMIT_FSIZE, limits.output_bytes + limits.scratch_bytes),
                           (resource.RLIMIT_CORE, 0), (resource.RLIMIT_NOFILE, 1024)):
            resource.setrlimit(res, (value, value))
        if nproc:  # root ignores RLIMIT_NPROC; the cgroup caps processes there
            resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
    return preexec


def _nproc_budget(limits: Limits) -> int:
    """RLIMIT_NPROC counts all of the user's processes: allow what runs now plus the sandbox's share."""
    try:
        uid = os.getuid()
        mine = sum(1 for p in os.listdir("/proc") if p.isdigit() and os.stat(f"/proc/{p}").st_uid == uid)
    except OSError:
        mine = 512
    return mine + limits.processes


def run_sandboxed(job: bytes, limits: Limits, *, sandbox: bool = True) -> RunResult:
    """Run the runner on ``job`` (a ``torch.save`` file's bytes) in a fresh sandbox; never raises
    for anything the submission does."""
    start = time.monotonic()
    result = RunResult()
    private = tempfile.mkdtemp(prefix="dlstudio-lite-sbx-")  # grader-only: not visible inside
    cgroup = _Cgroup(limits) if sandbox else _Cgroup.__new__(_Cgroup)
    if not sandbox:
        cgroup.dirs = []
    proc = None
    read_fd = write_fd = args_r = None
    procs_fds: list[int] = []
    try:
        procs_fds = cgroup.open_procs()
        job_file = os.path.join(private, "job.pt")
        with open(job_file, "xb") as f:
            f.write(job)
        os.chmod(job_file, 0o644)
        out_path = os.path.join(private, "output.txt")
        out_fd = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        read_fd, write_fd = os.pipe()
        pass_fds = [write_fd]
        if sandbox:
            args_r, args_w = os.pipe()
            data = b"\0".join(a.encode() for a in _bwrap_args(job_file, limits)) + b"\0"
            os.write(args_w, data)  # small (a few KB): fits in the pipe buffer
            os.close(args_w)
            pass_fds.append(args_r)
            py = sys.executable
            cmd = [shutil.which("bwrap") or "bwrap", "--args", str(args_r), py, "-I",
                   f"{RUN_DIR}/runner.py", f"{RUN_DIR}/job.pt", str(write_fd)]
            env = {}  # bwrap itself is PID 1 inside: its /proc/1/environ must not show ours
            cwd = "/"
        else:
            home = os.path.join(private, "home")
            os.mkdir(home)
            cmd = [sys.executable, "-I", str(RUNNER), job_file, str(write_fd)]
            env = sandbox_env(home)
            cwd = home
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out_fd, stderr=out_fd,
                                pass_fds=pass_fds, env=env, cwd=cwd, start_new_session=True,
                                preexec_fn=_limit_child(limits, procs_fds))
        os.close(out_fd)
        os.close(write_fd)
        write_fd = None
        if args_r is not None:
            os.close(args_r)
            args_r = None
        _read_frames(read_fd, proc, limits, result, start)
    except OSError as err:
        result.problems.append(f"the sandbox could not be started ({err})")
    finally:
        if proc is not None:
            _kill(proc)
        cgroup.kill()
        result.cpu_seconds = cgroup.cpu_seconds()
        cgroup.close()
        for fd in (read_fd, write_fd, args_r, *procs_fds):
            if fd is not None:
                os.close(fd)
        result.output = _read_output(os.path.join(private, "output.txt"), limits)
        shutil.rmtree(private, ignore_errors=True)
        result.seconds = time.monotonic() - start
    return result


def _read_frames(fd: int, proc: subprocess.Popen, limits: Limits, result: RunResult, start: float) -> None:
    """Read length-prefixed frames until the runner says done, the pipe closes or time runs out."""
    buf = bytearray()
    total = 0
    deadline = start + limits.notebook_s
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            result.problems.append(f"the notebook ran past its time limit ({limits.notebook_s:g} s) "
                                   "and was stopped")
            return
        ready, _, _ = select.select([fd], [], [], min(left, 1.0))
        if not ready:
            continue
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return  # everyone holding the pipe has exited
        total += len(chunk)
        if total > limits.result_bytes:
            result.problems.append(f"the notebook sent more than {limits.result_bytes} bytes of "
                                   "results and was stopped")
            return
        buf += chunk
        while len(buf) >= 8:
            (n,) = struct.unpack(">Q", bytes(buf[:8]))
            if n == 0:  # the runner's last word
                return
            if n > limits.result_bytes:
                result.problems.append("the result pipe carried a malformed frame")
                return
            if len(buf) < 8 + n:
                break
            frame = bytes(buf[8:8 + n])
            del buf[:8 + n]
            result.frames.append(frame)


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _read_output(path: str, limits: Limits) -> str:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return ""
    try:
        data = os.read(fd, limits.output_chars * 4 + 4)
    finally:
        os.close(fd)
    return data.decode("utf-8", "replace")[: limits.output_chars]
