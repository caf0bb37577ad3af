"""Hidden checks: load them, turn them into probes, and judge what came back (grader only).

``instructor/hidden_tests/<exercise>.json`` (written by ``dlstudio-lite exercises build``)
holds, per question, trusted Python that registers probes with ``check(call, verdict,
**context)`` (see :mod:`.probes`), plus ``reference``: the solution's definitions, which the
checks may use as ``ref.name``. None of it ever enters a sandbox: the probes' calls are
encoded as data, and the verdicts run here on the decoded answers.
"""
from __future__ import annotations

import io
import json
import math
import types
from dataclasses import dataclass
from pathlib import Path

import torch

from . import probes as P
from .exercises import HIDDEN_TESTS_SUBDIR, REPO_ROOT, Question

HIDDEN_TESTS_DIR = REPO_ROOT / HIDDEN_TESTS_SUBDIR
FORMAT = "dlstudio-lite-hidden-checks/2"


@dataclass
class QuestionResult:
    id: str
    points: int
    max_points: int
    message: str  # "passed", or why not
    title: str = ""  # "Question 1: nearest-code lookup"

    @property
    def passed(self) -> bool:
        return self.points == self.max_points


@dataclass
class HiddenChecks:
    """The grader's checks for one exercise."""

    exercise: str
    title: str
    questions: list[Question]
    reference: str

    @property
    def max_points(self) -> int:
        return sum(q.points for q in self.questions)

    @classmethod
    def load(cls, path: str | Path) -> "HiddenChecks":
        path = Path(path)
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("format") != FORMAT:
            raise ValueError(f"{path}: expected format {FORMAT!r}, got {data.get('format')!r}; "
                             f"run `dlstudio-lite exercises build`")
        return cls(data["exercise"], data.get("title", data["exercise"]),
                   [Question(q["id"], int(q["points"]), q["code"], str(q.get("title") or q["id"])) for q in data["questions"]],
                   data.get("reference", ""))

    def probes(self) -> dict[str, list[P.Probe]]:
        """Run the check code (trusted) and collect each question's probes, in order."""
        ref_ns: dict = {"__name__": f"reference_{self.exercise}"}
        exec(compile(self.reference, f"<reference of {self.exercise}>", "exec"), ref_ns)
        ref = types.SimpleNamespace(**{k: v for k, v in ref_ns.items() if not k.startswith("_")})
        found: dict[str, list[P.Probe]] = {}
        for q in self.questions:
            collected: list[P.Probe] = []

            def check(call, verdict, **context):
                if not isinstance(call, P.Call):
                    raise TypeError(f"check() needs a Call, got {type(call).__name__}")
                collected.append(P.Probe(call, verdict, context))

            ns = {"__name__": f"hidden_{q.id}", "torch": torch, "nn": torch.nn, "F": torch.nn.functional,
                  "math": math, "ref": ref, "check": check, "CheckFailed": P.CheckFailed,
                  **{n: getattr(P, n) for n in ("Call", "Op", "Gen", "Out", "Param", "Grad", "Module", "Opaque")}}
            exec(compile(q.code, f"<hidden check {q.id}>", "exec"), ns)
            if not collected:
                raise ValueError(f"{self.exercise}: the hidden check of {q.id!r} registers no probe")
            found[q.id] = collected
        return found


def load_hidden_checks(tests_dir: str | Path = HIDDEN_TESTS_DIR) -> dict[str, HiddenChecks]:
    tests_dir = Path(tests_dir)
    found = {p.stem: HiddenChecks.load(p) for p in sorted(tests_dir.glob("*.json"))}
    if not found:
        raise FileNotFoundError(f"no hidden checks (*.json) in {tests_dir}; run `dlstudio-lite exercises build` first")
    return found


class Exam:
    """One exercise's probes, encoded once per batch and judged for every submission."""

    def __init__(self, checks: HiddenChecks):
        self.checks = checks
        self.probes = checks.probes()
        self.tensors: dict[str, torch.Tensor] = {}
        self.specs: dict[str, list[dict]] = {
            qid: [P.encode_call(p.call, self.tensors) for p in plist] for qid, plist in self.probes.items()}

    def job(self, cells: list[str], limits, marker: str, sys_path: list[str]) -> bytes:
        """The bytes of the job file the runner reads: the student's cells and the probes' inputs."""
        meta = {"cells": cells, "marker": marker, "cell_s": float(limits.cell_s),
                "probe_s": float(limits.probe_s), "sys_path": sys_path,
                "questions": [{"id": qid, "probes": [P.json_spec(s) for s in specs]}
                              for qid, specs in self.specs.items()]}
        buf = io.BytesIO()
        torch.save({"meta": P.dumps(meta), "t": self.tensors}, buf)
        return buf.getvalue()

    def judge(self, qid: str, record_list, tensors: dict) -> str:
        """'passed', or the first reason a probe of ``qid`` failed (one sentence for the student)."""
        plist, specs = self.probes[qid], self.specs[qid]
        if not isinstance(record_list, list) or len(record_list) != len(plist):
            return "not tested: the notebook's report for this question was incomplete"
        for probe, spec, record in zip(plist, specs, record_list):
            if not isinstance(record, dict):
                return "not tested: the notebook's report for this question was malformed"
            try:
                result = P.Result(probe.call, record, tensors, spec)
            except (P.ProtocolError, KeyError, TypeError, ValueError, AttributeError):
                return "not tested: the notebook's report for this question was malformed"
            if result.raised is not None:
                return f"calling {probe.call.name} raised {result.raised}"
            try:
                probe.verdict(result, **probe.context)
            except AssertionError as err:
                return str(err) or f"a check of {probe.call.name} failed"
            except Exception as err:  # the answer had the wrong kind (an int where a tensor was due, ...)
                return (f"the value returned by {probe.call.name} could not be checked "
                        f"({type(err).__name__}: {str(err)[:300]})")
        return "passed"


def read_frame(frame: bytes) -> tuple[dict, dict]:
    """One result frame as (meta, tensors): loaded with ``weights_only=True``, then validated."""
    try:
        obj = torch.load(io.BytesIO(frame), weights_only=True, map_location="cpu")
    except Exception as err:
        raise P.ProtocolError(f"unreadable frame ({type(err).__name__})") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("meta"), str) or not isinstance(obj.get("t"), dict):
        raise P.ProtocolError("malformed frame")
    tensors = obj["t"]
    if not all(isinstance(k, str) and type(v) is torch.Tensor for k, v in tensors.items()):
        raise P.ProtocolError("malformed frame")
    meta = json.loads(obj["meta"])
    if not isinstance(meta, dict):
        raise P.ProtocolError("malformed frame")
    return meta, tensors
