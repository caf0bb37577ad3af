"""The reply format (sandbox -> grader), and its validation before anything is allocated.

A reply frame is ``>I`` header length, a JSON header, then raw tensor bytes::

    {"meta": {...}, "tensors": {"t0": {"dtype": "float32", "shape": [2, 3], "offset": 0}, ...}}

(written by :func:`.runner.frame_bytes`, inside the sandbox).
No pickle, no strides, no storages: the grader reads the header (size-capped), checks every
tensor's dtype, shape and byte range against the question's :class:`Budget` and the bytes
actually present, and only then copies the bytes into fresh contiguous tensors. A reply that
claims more elements than it carries, or more than the question's budget allows, is refused
as a whole (:class:`MalformedReply`), so what a submission sends can cost the grader at
most the frame itself plus the budget's elements.
"""
from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass

import torch

MAX_HEADER_BYTES = 2**20   # any frame's JSON header (parsed before the question is known: ~20 MiB of objects at worst)
MAX_DIMS = 8
DTYPES = {name: getattr(torch, name) for name in (
    "bool", "uint8", "int8", "int16", "int32", "int64", "float16", "bfloat16", "float32", "float64",
    "complex64", "complex128")}


class MalformedReply(ValueError):
    """A frame that is not a well-formed reply within its budget; the message says what was wrong."""


@dataclass(frozen=True)
class Budget:
    """The most one reply frame may hold: elements per tensor, elements in all, header bytes."""

    tensor_elements: int
    total_elements: int
    header_bytes: int = MAX_HEADER_BYTES

    @classmethod
    def around(cls, tensor_elements: int, total_elements: int, header_bytes: int, slack: int = 4) -> "Budget":
        """``slack`` times what the reference sent, with floors for tiny questions."""
        return cls(max(slack * tensor_elements, 4096), max(slack * total_elements, 65536),
                   min(max(slack * header_bytes, 65536), MAX_HEADER_BYTES))


def header(frame: bytes) -> tuple[dict, dict, int]:
    """(meta, tensor descriptors, where the data starts), after checking the header's own size."""
    if len(frame) < 4:
        raise MalformedReply("the frame is shorter than its header")
    (n,) = struct.unpack(">I", frame[:4])
    if n > MAX_HEADER_BYTES or 4 + n > len(frame):
        raise MalformedReply(f"the header claims {n} bytes")
    try:
        head = json.loads(frame[4:4 + n].decode("utf-8"))
    except (ValueError, RecursionError):
        raise MalformedReply("the header is not JSON") from None
    if not (isinstance(head, dict) and isinstance(head.get("meta"), dict) and isinstance(head.get("tensors"), dict)):
        raise MalformedReply("the header lacks meta or tensors")
    return head["meta"], head["tensors"], 4 + n


def tensors(frame: bytes, descriptors: dict, start: int, budget: Budget) -> dict[str, torch.Tensor]:
    """The frame's tensors, each checked against ``budget`` and the bytes present before it is built."""
    if start - 4 > budget.header_bytes:
        raise MalformedReply(f"a header of {start - 4} bytes, more than this question's {budget.header_bytes}")
    data_len = len(frame) - start
    plan, total = [], 0
    for key, d in descriptors.items():
        if not (isinstance(d, dict) and d.get("dtype") in DTYPES and isinstance(d.get("shape"), list)
                and len(d["shape"]) <= MAX_DIMS and type(d.get("offset")) is int
                and all(type(s) is int and s >= 0 for s in d["shape"])):
            raise MalformedReply(f"tensor {str(key)[:20]!r}: a malformed description")
        numel = math.prod(d["shape"])
        if numel > budget.tensor_elements:
            raise MalformedReply(f"a tensor of shape {tuple(d['shape'])[:MAX_DIMS]}: more than the "
                                 f"{budget.tensor_elements} elements this question's answers can need")
        total += numel
        if total > budget.total_elements:
            raise MalformedReply(f"more than the {budget.total_elements} elements in all that this question's answers can need")
        dtype = DTYPES[d["dtype"]]
        nbytes = numel * dtype.itemsize
        if d["offset"] < 0 or d["offset"] + nbytes > data_len:
            raise MalformedReply(f"a tensor of shape {tuple(d['shape'])} claims more bytes than the frame carries")
        plan.append((str(key), dtype, d["shape"], start + d["offset"], nbytes))
    out = {}
    for key, dtype, shape, at, nbytes in plan:  # everything is checked: now allocate
        if nbytes == 0:
            out[key] = torch.empty(shape, dtype=dtype)
            continue
        raw = bytearray(frame[at:at + nbytes])   # a fresh, aligned copy of exactly these bytes
        if dtype == torch.bool:  # a byte other than 0/1 is not a valid bool in torch
            out[key] = torch.frombuffer(raw, dtype=torch.uint8).ne(0).reshape(shape)
        else:
            out[key] = torch.frombuffer(raw, dtype=dtype).reshape(shape)
    return out
