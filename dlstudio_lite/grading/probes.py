"""Probes: what the grader asks a submission, and how it reads the answer (trusted side).

A hidden check of a question (``instructor/hidden_tests/<exercise>.json``) is Python that
runs in the grader only. It builds inputs, describes calls with :class:`Call`, and pairs
each call with a *verdict* function through ``check(call, verdict, **context)``::

    def verdict(r, z_e, shape):
        idx, z_q = r.outputs(2)                      # the student's return value, decoded
        assert tuple(idx.shape) == shape[:1] + shape[2:], f"... got {tuple(idx.shape)}"
        assert torch.equal(r.after(z_e), z_e), "nearest_code changed its input z_e"

    z_e = torch.randn(2, 4, 3, 5, generator=g, requires_grad=True)
    check(Call("nearest_code", z_e, codebook,
               grads=[Grad([(Out(1), upstream)], wrt=[z_e])]), verdict, z_e=z_e, shape=(2, 4, 3, 5))

Only the call (function name, inputs, upstream gradients) is sent into the sandbox, as
JSON plus plain tensors; the verdict and the context stay in the grader. A question earns
its points when every verdict of its probes passes. See ``instructor/README.md``.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Callable

import torch

OPS = {"add", "sub", "mul", "div", "pow", "neg", "exp", "log", "sum", "mean", "matmul", "linear",
       "relu", "embedding", "permute", "reshape", "cat", "stack"}


class Gen:
    """A fresh ``torch.Generator().manual_seed(seed)``, made where the call happens."""

    def __init__(self, seed: int):
        self.seed = int(seed)

    def make(self) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed)


class Op:
    """A tensor computed in the sandbox from other inputs by a whitelisted torch op.

    Lets a probe hand the student a graph (``rec_loss`` built from ``weight``) whose gradients
    the grader asks for afterwards. :meth:`value` computes the same thing in the grader.
    """

    def __init__(self, op: str, *args, **kwargs):
        if op not in OPS:
            raise ValueError(f"unknown op {op!r}: expected one of {sorted(OPS)}")
        self.op, self.args, self.kwargs = op, args, kwargs

    def value(self):
        import torch.nn.functional as F
        fn = {"linear": F.linear, "relu": F.relu, "embedding": F.embedding}.get(self.op) or getattr(torch, self.op)
        return fn(*(_local(a) for a in self.args), **{k: _local(v) for k, v in self.kwargs.items()})


def _local(v):
    if isinstance(v, Op):
        return v.value()
    if isinstance(v, Gen):
        return v.make()
    if isinstance(v, (tuple, list)):
        return type(v)(_local(x) for x in v)
    return v


@dataclass(frozen=True)
class Out:
    """The student's return value, or an item of it: ``Out()``, ``Out(0)``, ``Out(1, 0)``."""

    path: tuple = ()

    def __init__(self, *path: int):
        object.__setattr__(self, "path", tuple(int(i) for i in path))


@dataclass(frozen=True)
class Param:
    """A parameter of the module under test (``Module`` probes), by its ``named_parameters`` name."""

    name: str


@dataclass
class Grad:
    """Gradients of ``sum_i <target_i, upstream_i>`` with respect to ``wrt``, computed in the sandbox.

    ``of`` lists ``(target, upstream)``: a target is ``Out(...)``, an input tensor or an ``Op``;
    ``upstream`` a tensor, or ``None`` for a scalar target. ``wrt`` lists input tensors that
    require grad, or ``Param`` names. Unused inputs come back as ``None``.
    """

    of: list
    wrt: list


@dataclass
class Module:
    """Construct ``name(*args, **kwargs)`` from the notebook, load ``params``, then call it."""

    name: str
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)


@dataclass
class Call:
    """Call the notebook's ``target`` (a function name or a :class:`Module`) on these inputs."""

    target: str | Module
    args: tuple
    kwargs: dict
    grads: list

    def __init__(self, target: str | Module, *args, grads: list | None = None, **kwargs):
        self.target, self.args, self.kwargs, self.grads = target, args, kwargs, list(grads or [])

    @property
    def name(self) -> str:
        return self.target.name if isinstance(self.target, Module) else self.target


@dataclass
class Probe:
    """One verdict over one call (``single``) or over several calls judged together."""

    calls: list[Call]
    verdict: Callable
    context: dict
    visible: bool = False  # inputs of the visible check: its message may show values
    single: bool = True

    @property
    def call(self) -> Call:
        return self.calls[0]


class _Spec:
    """Encodes one call as JSON + tensors; tensors keep their identity as named nodes."""

    def __init__(self, tensors: dict):
        self.tensors, self.nodes, self.names = tensors, [], {}
        self.keep = []  # the encoded objects, so that their ids stay unique while the spec lives

    def node(self, obj) -> str:
        key = id(obj)
        if key in self.names:
            return self.names[key]
        if isinstance(obj, Op):
            args = [self.enc(a) for a in obj.args]
            kwargs = {k: self.enc(v) for k, v in obj.kwargs.items()}
            entry = {"kind": "op", "op": obj.op, "args": args, "kwargs": kwargs}
        else:
            tkey = f"in{len(self.tensors)}"
            self.tensors[tkey] = obj.detach().clone()
            entry = {"kind": "tensor", "key": tkey, "rg": bool(obj.requires_grad)}
        name = f"n{len(self.nodes)}"
        entry["name"] = name
        self.nodes.append(entry)
        self.names[key] = name
        self.keep.append(obj)
        return name

    def enc(self, v):
        if isinstance(v, (torch.Tensor, Op)):
            return {"node": self.node(v)}
        if isinstance(v, Gen):
            return {"generator": v.seed}
        if isinstance(v, torch.dtype):
            return {"dtype": str(v).replace("torch.", "")}
        if isinstance(v, float) and not math.isfinite(v):
            return {"float": repr(v)}
        if v is None or isinstance(v, (bool, int, float, str)):
            return {"py": v}
        if isinstance(v, tuple):
            return {"tuple": [self.enc(x) for x in v]}
        if isinstance(v, list):
            return {"list": [self.enc(x) for x in v]}
        if isinstance(v, dict):
            return {"dict": {str(k): self.enc(x) for k, x in v.items()}}
        raise TypeError(f"cannot send a {type(v).__name__} into the sandbox")

    def ref(self, r):
        if isinstance(r, Out):
            return {"out": list(r.path)}
        if isinstance(r, Param):
            return {"param": r.name}
        return {"node": self.node(r)}


def encode_call(call: Call, tensors: dict) -> dict:
    """The JSON spec of ``call``; its tensors are added to ``tensors``."""
    spec = _Spec(tensors)
    args = [spec.enc(a) for a in call.args]
    kwargs = {k: spec.enc(v) for k, v in call.kwargs.items()}
    grads = [{"of": [(spec.ref(t), None if up is None else spec.enc(up)) for t, up in g.of],
              "wrt": [spec.ref(w) for w in g.wrt]} for g in call.grads]
    if isinstance(call.target, Module):
        m = call.target
        target = {"name": m.name, "module": True, "args": [spec.enc(a) for a in m.args],
                  "kwargs": {k: spec.enc(v) for k, v in m.kwargs.items()},
                  "params": {k: spec.enc(v.detach()) for k, v in m.params.items()}}
    else:
        target = {"name": call.target}
    # "_names" (tensor identity -> node name) and "_keep" stay in the grader: see json_spec.
    return {"target": target, "args": args, "kwargs": kwargs, "grads": grads, "nodes": spec.nodes,
            "_names": dict(spec.names), "_keep": spec.keep}


# ----------------------------------------------------------------------------- answers


class ProtocolError(ValueError):
    """The sandbox sent something that is not a well-formed report."""


class Opaque:
    """A returned value that is not plain data (a module, a generator, ...): its type and repr."""

    def __init__(self, type_name: str, text: str):
        self.type_name, self.text = str(type_name)[:100], str(text)[:200]

    def __repr__(self) -> str:
        return f"<{self.type_name}: {self.text}>"


def decode(enc, tensors: dict, depth: int = 0):
    """A value sent by the runner, rebuilt from plain data (never unpickled objects)."""
    if depth > 10 or not isinstance(enc, dict) or len(enc) > 2:
        raise ProtocolError("malformed value")
    if "tensor" in enc:
        t = tensors.get(enc["tensor"])
        if type(t) is not torch.Tensor:
            raise ProtocolError("a tensor is missing from the report")
        t = t.clone()
        if enc.get("rg") is True and (t.is_floating_point() or t.is_complex()):
            t.requires_grad_(True)  # only records that the student's tensor required grad
        return t
    if "py" in enc:
        v = enc["py"]
        if v is not None and type(v) not in (bool, int, float, str):
            raise ProtocolError("malformed value")
        return v
    if "float" in enc:
        return float(str(enc["float"])[:40])
    if "tuple" in enc or "list" in enc:
        items = enc.get("tuple", enc.get("list"))
        if not isinstance(items, list):
            raise ProtocolError("malformed value")
        values = [decode(x, tensors, depth + 1) for x in items]
        return tuple(values) if "tuple" in enc else values
    if "dict" in enc:
        if not isinstance(enc["dict"], dict):
            raise ProtocolError("malformed value")
        return {str(k): decode(v, tensors, depth + 1) for k, v in enc["dict"].items()}
    if "opaque" in enc:
        return Opaque(enc["opaque"], enc.get("repr", ""))
    raise ProtocolError("malformed value")


class CheckFailed(AssertionError):
    pass


class Result:
    """What came back from one probe, as the verdict sees it."""

    def __init__(self, call: Call, record: dict, tensors: dict, spec: dict):
        self.call = call
        self._tensors = tensors
        self.raised = record.get("raised")
        if self.raised is not None:
            self.raised = str(self.raised)[:2000]
            return
        self.value = decode(record["out"], tensors)
        # Input tensors by identity, in the order the spec named them.
        leaves = [n["name"] for n in spec["nodes"] if n["kind"] == "tensor"]
        self._after = {n: decode(record["after"][n], tensors) for n in leaves if n in record["after"]}
        self._grad_after = {n: decode(v, tensors) for n, v in record.get("grad_after", {}).items()}
        self._names = spec["_names"]
        self.grads = []
        for g in record.get("grads", []):
            if "error" in g:
                self.grads.append(str(g["error"])[:2000])
            else:
                self.grads.append([decode(x, tensors) for x in g["grads"]])

    def outputs(self, n: int) -> tuple:
        """The return value as a tuple of ``n`` items, or a failed check saying what came back."""
        v = self.value
        if not isinstance(v, (tuple, list)) or len(v) != n:
            what = f"{len(v)} values" if isinstance(v, (tuple, list)) else type(v).__name__
            raise CheckFailed(f"{self.call.name} should return {n} values, returned {what}")
        return tuple(v)

    def tensor(self, v=None, what: str = "the result"):
        """``v`` (default: the return value) if it is a tensor, else a failed check."""
        v = self.value if v is None else v
        if not isinstance(v, torch.Tensor):
            raise CheckFailed(f"{what} of {self.call.name} should be a tensor, got {type(v).__name__}")
        return v

    def after(self, t: torch.Tensor) -> torch.Tensor:
        """Input tensor ``t`` as it was after the call (to see whether the student changed it)."""
        return self._after[self._names[id(t)]]

    def grad_after_call(self, t: torch.Tensor):
        """``t.grad`` right after the call (``None`` if the call left no gradient on it)."""
        return self._grad_after.get(self._names[id(t)])

    def grad(self, i: int = 0) -> list:
        """The gradients of request ``i`` (``None`` where unused), or a failed check with the error."""
        g = self.grads[i] if i < len(self.grads) else "no gradients came back"
        if isinstance(g, str):
            raise CheckFailed(_gradient_failure(self.call.name, g))
        return g


def _gradient_failure(name: str, error: str) -> str:
    """One sentence for the student; autograd's own wording about the checker's graph says nothing to them."""
    if "does not require grad" in error or "not have been used in the graph" in error or "no grad_fn" in error:
        return (f"no gradient flows from what {name} returned back to its inputs "
                f"(a .detach(), .item() or a new tensor built from the values cuts the graph)")
    if "backward through the graph a second time" in error:
        return (f"after {name} the graph was freed, so the rest of the training step cannot backpropagate "
                f"(keep it with retain_graph=True)")
    first = error.splitlines()[0] if error else "unknown error"
    return f"the gradients of {name}'s result could not be computed ({first[:200]})"


def json_spec(spec: dict) -> dict:
    """The part of a spec that goes into the sandbox (no grader-only keys)."""
    return {k: v for k, v in spec.items() if not k.startswith("_")}


def dumps(obj) -> str:
    return json.dumps(obj, allow_nan=False)

