"""One sandbox per submission: bubblewrap namespaces, resource limits, and a kill at the deadline.

:func:`run_sandboxed` starts ``python -I runner.py`` (see :mod:`.runner`) inside
``bwrap`` with

* new user, PID, network, IPC, UTS and cgroup namespaces (``--unshare-all``), no
  capabilities, no further user namespaces, a new terminal session, and
  ``--die-with-parent``;
* a read-only root made of read-only binds of the Python installation (``/usr``, the base
  prefix, the virtual environment), the package and the runner, a fresh ``/proc`` that shows
  only the sandbox's processes and a ``/dev`` of six device nodes; the only writable place is
  ONE tmpfs of ``scratch_bytes``, the student's home, with ``/tmp`` and ``/dev/shm`` as
  symlinks into it, so all the files a submission writes together fit in that size;
* a clean environment; bwrap's arguments passed through a pipe (``--args``), so that
  ``/proc/1/cmdline`` shows no host paths;
* ``setrlimit`` limits on address space, CPU time, file size, open files and core dumps,
  and, where the grader may create cgroups (v1, as root), a cgroup per sandbox capping
  memory and the number of processes (:mod:`.cgroup`);
* the student's output (stdout and stderr) and the results come back over two pipes that
  the grader reads with size caps; nothing of the sandbox is written to the grader's disk
  (the job file, written by the grader, is the only file).

The grader's cost per running sandbox is bounded whatever the submission does: on disk, its
job file; in memory, the frames read so far (``result_bytes`` in all), one copy of the frame
being parsed, its JSON header (:data:`.reply.MAX_HEADER_BYTES`) and the question's budget of
elements (:mod:`.reply`), i.e. about ``2 * result_bytes + 20 MiB``; the tmpfs, at most
``scratch_bytes``, is memory charged to the sandbox (and to its cgroup where there is one).

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
from dataclasses import dataclass, field
from pathlib import Path

from .cgroup import Cgroup

RUNNER = Path(__file__).with_name("runner.py")
PACKAGE_DIR = Path(__file__).resolve().parents[1]  # dlstudio_lite/
HOME = "/home/student"
RUN_DIR = "/run/dlstudio-lite"
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")


class SandboxUnavailable(RuntimeError):
    """No usable sandbox on this machine; the message names the fix."""


@dataclass(frozen=True)
class Limits:
    """Limits of one graded notebook (seconds, bytes)."""

    notebook_s: float = 120.0     # the whole sandbox: startup, the student's cells and the probes
    cell_s: float = 60.0          # one student cell
    probe_s: float = 20.0         # one probe (one call of a student function and its gradients)
    memory_bytes: int = 4 * 2**30  # address space of each process (torch reserves ~1.5 GiB)
    output_bytes: int = 1_000_000  # the student's stdout+stderr that the grader reads (then it closes the pipe)
    output_chars: int = 100_000    # what the feedback keeps of it
    result_bytes: int = 64 * 2**20  # what the grader reads from the result pipe
    processes: int = 64            # tasks (processes and threads) in the sandbox's cgroup
    scratch_bytes: int = 256 * 2**20  # all files the sandbox writes: home, /tmp and /dev/shm together

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
    # /dev by hand (bwrap's --dev is a writable tmpfs of no fixed size), then the one scratch
    # tmpfs and its symlinks. They come first: a virtual environment or checkout under /tmp
    # (CI clones there) is bound afterwards, through the /tmp symlink, so nothing hides it;
    # the links are relative, so that bwrap can follow them while it builds the new root.
    args += ["--proc", "/proc", "--dir", "/dev"]
    for dev in DEVICES:
        if os.path.exists(f"/dev/{dev}"):
            args += ["--dev-bind", f"/dev/{dev}", f"/dev/{dev}"]
    for i, name in enumerate(("stdin", "stdout", "stderr")):
        args += ["--symlink", f"/proc/self/fd/{i}", f"/dev/{name}"]
    args += ["--symlink", "/proc/self/fd", "/dev/fd",
             "--size", str(limits.scratch_bytes), "--tmpfs", HOME, "--dir", f"{HOME}/.tmp", "--dir", f"{HOME}/.shm",
             "--symlink", f"{HOME.lstrip('/')}/.tmp", "/tmp", "--symlink", f"../{HOME.lstrip('/')}/.shm", "/dev/shm"]
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
             "--remount-ro", "/", "--chdir", HOME, "--clearenv"]
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
                           (resource.RLIMIT_FSIZE, limits.scratch_bytes),
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
    cgroup = Cgroup(limits) if sandbox else Cgroup.inert()
    proc = None
    fds: dict[str, int] = {}
    procs_fds: list[int] = []
    try:
        procs_fds = cgroup.open_procs()
        job_file = os.path.join(private, "job.pt")
        with open(job_file, "xb") as f:
            f.write(job)
        os.chmod(job_file, 0o644)
        fds["result"], fds["result_w"] = os.pipe()
        fds["output"], fds["output_w"] = os.pipe()
        pass_fds = [fds["result_w"]]
        if sandbox:
            fds["args"], args_w = os.pipe()
            data = b"\0".join(a.encode() for a in _bwrap_args(job_file, limits)) + b"\0"
            os.write(args_w, data)  # small (a few KB): fits in the pipe buffer
            os.close(args_w)
            pass_fds.append(fds["args"])
            cmd = [shutil.which("bwrap") or "bwrap", "--args", str(fds["args"]), sys.executable, "-I",
                   f"{RUN_DIR}/runner.py", f"{RUN_DIR}/job.pt", str(fds["result_w"])]
            env = {}  # bwrap itself is PID 1 inside: its /proc/1/environ must not show ours
            cwd = "/"
        else:
            cwd = os.path.join(private, "home")
            os.mkdir(cwd)
            cmd = [sys.executable, "-I", str(RUNNER), job_file, str(fds["result_w"])]
            env = sandbox_env(cwd)
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=fds["output_w"], stderr=fds["output_w"],
                                pass_fds=pass_fds, env=env, cwd=cwd, start_new_session=True,
                                preexec_fn=_limit_child(limits, procs_fds))
        for name in ("result_w", "output_w", "args"):  # the child's ends: only the child holds them now
            if name in fds:
                os.close(fds.pop(name))
        output = bytearray()
        _collect(fds, limits, result, output, start)
        result.output = output.decode("utf-8", "replace")[: limits.output_chars]
    except OSError as err:
        result.problems.append(f"the sandbox could not be started ({err})")
    finally:
        if proc is not None:
            _kill(proc)
        cgroup.kill()
        result.cpu_seconds = cgroup.cpu_seconds()
        cgroup.close()
        for fd in (*fds.values(), *procs_fds):
            os.close(fd)
        shutil.rmtree(private, ignore_errors=True)
        result.seconds = time.monotonic() - start
    return result


def _collect(fds: dict[str, int], limits: Limits, result: RunResult, output: bytearray, start: float) -> None:
    """Read frames and output until the runner says done, the result pipe closes or time runs out.

    The output pipe is read up to ``limits.output_bytes`` and then closed, so a flood of prints
    meets a broken pipe instead of filling anything on the grader's side.
    """
    buf = bytearray()
    total = 0
    deadline = start + limits.notebook_s
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                result.problems.append(f"the notebook ran past its time limit ({limits.notebook_s:g} s) "
                                       "and was stopped")
                return
            watch = [fds["result"]] + ([fds["output"]] if "output" in fds else [])
            ready, _, _ = select.select(watch, [], [], min(left, 1.0))
            if "output" in fds and fds["output"] in ready:
                _read_output(fds, limits, output)
            if fds["result"] not in ready:
                continue
            chunk = os.read(fds["result"], 1 << 16)
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
                result.frames.append(bytes(buf[8:8 + n]))
                del buf[:8 + n]
    finally:
        if "output" in fds:  # what the runner printed before its last word, without waiting for more
            os.set_blocking(fds["output"], False)
            _read_output(fds, limits, output, drain=True)


def _read_output(fds: dict[str, int], limits: Limits, output: bytearray, drain: bool = False) -> None:
    """One read (``drain``: all that is there) of the output pipe, kept up to ``output_bytes``;
    at that cap, or at its end, the pipe is closed."""
    while "output" in fds:
        try:
            chunk = os.read(fds["output"], 1 << 16)
        except BlockingIOError:
            return
        output += chunk[: max(0, limits.output_bytes - len(output))]
        if not chunk or len(output) >= limits.output_bytes:
            os.close(fds.pop("output"))
        if not drain:
            return


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
