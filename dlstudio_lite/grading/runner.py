"""The sandbox side of grading: run one student's notebook, then the grader's probes.

This file runs *inside* the sandbox as a plain script (``python -I runner.py JOB RESULT_FD``),
in the student's own process, so nothing here is trusted: a student can change any of it at
run time. It therefore holds no check, no expected value and no reference implementation.
It only

1. executes the student's code cells in one namespace (a cell that raises or runs past its
   time limit is noted and the next one runs), with stdout/stderr going to a capped file;
2. calls the student's functions on the inputs of each probe (tensors, numbers, seeded
   generators, small graphs of whitelisted torch ops), and for each probe sends back the
   outputs, the inputs as they are after the call, the ``.grad`` left on input leaves and
   the gradients for the upstream gradients the grader chose;
3. writes all of that as frames (:func:`frame_bytes`: a JSON header, then the tensors' raw
   bytes) to the result pipe; the grader checks each frame against the question's budget
   before it builds a single tensor (:mod:`.reply`).

The grader compares the data with its own reference outside the sandbox. Whatever a
student does to this script can only change the data it sends, never a verdict.
Only the standard library and torch are imported here, so the package need not load.
"""
import builtins
import json
import os
import signal
import struct
import sys
import time

MAX_TEXT = 2000


class _Timeout(BaseException):
    """Raised by the alarm; a BaseException so that `except Exception` in student code misses it."""


def _on_alarm(signum, frame):
    raise _Timeout()


def _error(err: BaseException) -> str:
    if isinstance(err, _Timeout):
        return "TimeoutError: ran past its time limit"
    try:
        text = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
    except BaseException:  # a student's exception whose __str__ raises
        text = type(err).__name__
    return text[:MAX_TEXT]


def _strip_magics(source: str) -> tuple[str, int]:
    """IPython-only lines (``%magic``, ``!shell``) become ``pass``: this runner is plain Python."""
    lines, skipped = [], 0
    for line in source.split("\n"):
        body = line.lstrip()
        if body.startswith(("%", "!")):
            lines.append(line[: len(line) - len(body)] + "pass")
            skipped += 1
        else:
            lines.append(line)
    return "\n".join(lines), skipped


def frame_bytes(meta: dict, tensors: dict, dumps=json.dumps, pack=struct.pack) -> bytes:
    """One reply frame: ``>I`` header length, the JSON header, the tensors' bytes (see :mod:`.reply`)."""
    import ctypes

    header, chunks, offset = {"meta": meta, "tensors": {}}, [], 0
    for key, t in tensors.items():
        n = t.numel() * t.element_size()
        header["tensors"][key] = {"dtype": str(t.dtype).replace("torch.", ""), "shape": list(t.shape), "offset": offset}
        chunks.append(ctypes.string_at(t.data_ptr(), n) if n else b"")  # t: a plain contiguous copy
        offset += n
    head = dumps(header).encode()
    return pack(">I", len(head)) + head + b"".join(chunks)


class _Frames:
    """Length-prefixed frames on the result pipe."""

    def __init__(self, fd: int):
        self.fd, self.frame_bytes, self.pack, self.write = fd, frame_bytes, struct.pack, os.write

    def send(self, meta: dict, tensors: dict) -> None:
        data = self.frame_bytes(meta, tensors)
        data = self.pack(">Q", len(data)) + data
        while data:
            data = data[self.write(self.fd, data):]


class _Encoder:
    """Turns returned values into JSON + a dict of plain tensors."""

    def __init__(self, torch, tensor_elements: int, total_elements: int):
        self.torch, self.tensors, self.numel = torch, {}, 0
        self.tensor_elements, self.total_elements = tensor_elements, total_elements  # the question's budget

    def tensor(self, t):
        torch = self.torch
        if t.layout != torch.strided or t.is_quantized or t.device.type == "meta":
            return {"opaque": type(t).__name__, "repr": f"a {t.layout} tensor"}
        n = t.numel()
        if n > self.tensor_elements or self.numel + n > self.total_elements:
            return {"opaque": "Tensor", "repr": f"a tensor of shape {tuple(t.shape)} (far larger than the answer)"}
        self.numel += n
        plain = torch.empty(tuple(t.shape), dtype=t.dtype)  # a plain Tensor, never a subclass
        with torch.no_grad():
            plain.copy_(t.detach().cpu())
        key = f"t{len(self.tensors)}"
        self.tensors[key] = plain
        return {"tensor": key, "rg": bool(t.requires_grad)}

    def __call__(self, value, depth: int = 0):
        torch = self.torch
        if depth > 8:
            return {"opaque": type(value).__name__, "repr": "nested too deeply"}
        if isinstance(value, torch.Tensor):
            return self.tensor(value)
        if value is None or type(value) in (bool, int, str):
            if type(value) is int and abs(value) > 2**62:
                return {"opaque": "int", "repr": str(value)[:100]}
            return {"py": value[:MAX_TEXT] if type(value) is str else value}
        if type(value) is float:
            return {"float": repr(value)}
        if isinstance(value, (tuple, list)) and len(value) <= 256:
            kind = "list" if isinstance(value, list) else "tuple"
            return {kind: [self(v, depth + 1) for v in value]}
        if isinstance(value, dict) and len(value) <= 256 and all(type(k) is str for k in value):
            return {"dict": {k: self(v, depth + 1) for k, v in value.items()}}
        try:
            text = repr(value)[:200]
        except BaseException:
            text = "?"
        return {"opaque": type(value).__name__[:100], "repr": text}


class _Probe:
    """Builds one probe's inputs, calls the student's code, collects what came back."""

    def __init__(self, spec, tensors, ns, torch, ops, grad):
        self.spec, self.tensors, self.ns, self.torch, self.ops, self.grad = spec, tensors, ns, torch, ops, grad
        self.nodes, self.module = {}, None

    def value(self, enc):
        if "py" in enc:
            return enc["py"]
        if "float" in enc:
            return float(enc["float"])
        if "node" in enc:
            return self.nodes[enc["node"]]
        if "generator" in enc:
            return self.torch.Generator().manual_seed(int(enc["generator"]))
        if "tuple" in enc:
            return tuple(self.value(v) for v in enc["tuple"])
        if "list" in enc:
            return [self.value(v) for v in enc["list"]]
        if "dict" in enc:
            return {k: self.value(v) for k, v in enc["dict"].items()}
        if "dtype" in enc:
            return getattr(self.torch, enc["dtype"])
        raise ValueError(f"unknown input encoding {sorted(enc)}")

    def build(self):
        for node in self.spec["nodes"]:
            if node["kind"] == "tensor":
                t = self.tensors[node["key"]].clone()
                if node["rg"]:
                    t.requires_grad_(True)
            else:
                args = [self.value(a) for a in node["args"]]
                kwargs = {k: self.value(v) for k, v in node["kwargs"].items()}
                t = self.ops[node["op"]](*args, **kwargs)
            self.nodes[node["name"]] = t

    def target(self):
        target = self.spec["target"]
        name = target["name"]
        if name not in self.ns:
            raise NameError(f"{name} is not defined in the notebook")
        obj = self.ns[name]
        if "module" not in target:
            return obj
        module = obj(*[self.value(a) for a in target["args"]],
                     **{k: self.value(v) for k, v in target["kwargs"].items()})
        params = dict(module.named_parameters())
        wanted = target["params"]
        if sorted(params) != sorted(wanted):
            raise AttributeError(f"{name} has parameters {sorted(params)}, expected {sorted(wanted)}")
        with self.torch.no_grad():
            for pname, enc in wanted.items():
                params[pname].copy_(self.value(enc))
        self.module = module
        return module

    def resolve(self, ref, out):
        if "node" in ref:
            return self.nodes[ref["node"]]
        if "param" in ref:
            if self.module is None:
                raise ValueError("this probe has no module")
            return dict(self.module.named_parameters())[ref["param"]]
        value = out
        for i in ref["out"]:
            value = value[i]
        return value

    def run(self, encoder):
        torch = self.torch
        self.build()
        fn = self.target()
        torch.manual_seed(0)  # modules built inside the student's function start the same way
        args = [self.value(a) for a in self.spec["args"]]
        kwargs = {k: self.value(v) for k, v in self.spec["kwargs"].items()}
        out = fn(*args, **kwargs)
        leaves = [n["name"] for n in self.spec["nodes"] if n["kind"] == "tensor"]
        record = {
            "out": encoder(out),
            "after": {n: encoder(self.nodes[n]) for n in leaves},
            "grad_after": {n: encoder(self.nodes[n].grad) for n in leaves
                           if self.nodes[n].requires_grad},
            "grads": [],
        }
        for request in self.spec["grads"]:
            try:
                targets = [self.resolve(ref, out) for ref, _ in request["of"]]
                ups = [None if up is None else self.value(up) for _, up in request["of"]]
                wrt = [self.resolve(ref, out) for ref in request["wrt"]]
                grads = self.grad(targets, wrt, ups, retain_graph=True, allow_unused=True)
                record["grads"].append({"grads": [encoder(g) for g in grads]})
            except BaseException as err:
                if isinstance(err, _Timeout):
                    raise
                record["grads"].append({"error": _error(err)})
        return record


def _say(text: str) -> None:
    """A line on the output (cell markers); a full or closed output must not stop the runner."""
    try:
        print(text, flush=True)
    except BaseException:
        pass


def probe_ops(torch) -> dict:
    """The whitelisted torch ops a probe's inputs may be built with (see ``probes.Op``)."""
    F = torch.nn.functional
    return {"add": torch.add, "sub": torch.sub, "mul": torch.mul, "div": torch.div, "pow": torch.pow,
            "neg": torch.neg, "exp": torch.exp, "log": torch.log, "sum": torch.sum, "mean": torch.mean,
            "matmul": torch.matmul, "linear": F.linear, "relu": F.relu, "embedding": F.embedding,
            "permute": torch.permute, "reshape": torch.reshape, "cat": torch.cat, "stack": torch.stack}


def main(argv):
    job_path, result_fd = argv[1], int(argv[2])
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a full output file makes print() fail, not the runner die
    signal.signal(signal.SIGALRM, _on_alarm)
    os.set_inheritable(result_fd, False)
    import torch

    # Bound before any student code runs, so that rebinding the names does not reach us.
    frames = _Frames(result_fd)
    grad = torch.autograd.grad
    setitimer, monotonic = signal.setitimer, time.monotonic
    ops = probe_ops(torch)
    with open(job_path, "rb") as f:
        job = torch.load(f, weights_only=True)
    meta, tensors = json.loads(job["meta"]), job["t"]
    for root in meta.get("sys_path", []):
        sys.path.insert(0, root)

    ns = {"__name__": "__main__", "__builtins__": builtins}
    cells = []
    for i, source in enumerate(meta["cells"]):
        source, skipped = _strip_magics(source)
        _say(f"\n{meta['marker']} {i}")
        start = monotonic()
        entry = {"index": i, "error": None, "skipped_lines": skipped}
        try:
            code = builtins.compile(source, f"<code cell {i + 1}>", "exec")
            setitimer(signal.ITIMER_REAL, meta["cell_s"])
            try:
                exec(code, ns)
            finally:
                setitimer(signal.ITIMER_REAL, 0)
        except BaseException as err:
            entry["error"] = _error(err)
        entry["seconds"] = round(monotonic() - start, 3)
        cells.append(entry)
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except BaseException:
            pass
    _say(f"\n{meta['marker']} probes")
    frames.send({"kind": "cells", "cells": cells}, {})

    for question in meta["questions"]:
        results = []
        encoder = _Encoder(torch, question["tensor_elements"], question["total_elements"])
        for spec in question["probes"]:
            try:
                setitimer(signal.ITIMER_REAL, meta["probe_s"])
                try:
                    results.append(_Probe(spec, tensors, ns, torch, ops, grad).run(encoder))
                finally:
                    setitimer(signal.ITIMER_REAL, 0)
            except BaseException as err:
                results.append({"raised": _error(err)})
        frames.send({"kind": "question", "id": question["id"], "results": results}, encoder.tensors)
    os.write(result_fd, struct.pack(">Q", 0))  # done


if __name__ == "__main__":
    main(sys.argv)
