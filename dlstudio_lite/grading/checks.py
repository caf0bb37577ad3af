"""Hidden checks: load them, turn them into probes, and judge what came back (grader only).

``instructor/hidden_tests/<exercise>.json`` (written by ``dlstudio-lite exercises build``)
holds, per question, trusted Python that registers probes with ``check(call, verdict,
**context)`` (see :mod:`.probes`), plus ``reference``: the solution's definitions, which the
checks may use as ``ref.name``. None of it ever enters a sandbox: the probes' calls are
encoded as data, and the verdicts run here on the decoded answers.
"""
from __future__ import annotations

import hashlib
import io
import json
import math
import types
from dataclasses import dataclass
from pathlib import Path

import torch

from . import probes as P
from .exercises import HIDDEN_TESTS_SUBDIR, REPO_ROOT, Question
from .reply import Budget

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

    def probes(self, seed: int) -> tuple[dict[str, list[P.Probe]], dict]:
        """Run the check code (trusted) with this grading run's ``seed``; each question's probes
        in order, and the reference's namespace."""
        ref_ns: dict = {"__name__": f"reference_{self.exercise}"}
        exec(compile(self.reference, f"<reference of {self.exercise}>", "exec"), ref_ns)
        ref = types.SimpleNamespace(**{k: v for k, v in ref_ns.items() if not k.startswith("_")})
        found: dict[str, list[P.Probe]] = {}
        for q in self.questions:
            collected: list[P.Probe] = []

            def check(call, verdict, visible=False, **context):
                calls = list(call) if isinstance(call, (tuple, list)) else [call]
                if not calls or not all(isinstance(c, P.Call) for c in calls):
                    raise TypeError(f"check() needs a Call or a tuple of Calls, got {call!r}")
                collected.append(P.Probe(calls, verdict, context, bool(visible), isinstance(call, P.Call)))

            def rng(n: int, _q=q.id) -> torch.Generator:
                """A generator seeded from this run's seed: inputs that change with every grading run."""
                return torch.Generator().manual_seed(run_seed(seed, self.exercise, _q, "rng", n))

            def gen(n: int, _q=q.id) -> P.Gen:
                """``Gen`` for the student's call, seeded from this run's seed and ``n``."""
                return P.Gen(run_seed(seed, self.exercise, _q, "gen", n))

            ns = {"__name__": f"hidden_{q.id}", "torch": torch, "nn": torch.nn, "F": torch.nn.functional,
                  "math": math, "ref": ref, "check": check, "CheckFailed": P.CheckFailed, "rng": rng,
                  **{n: getattr(P, n) for n in ("Call", "Op", "Out", "Param", "Grad", "Module", "Opaque")},
                  "Gen": gen}
            exec(compile(q.code, f"<hidden check {q.id}>", "exec"), ns)
            if not collected:
                raise ValueError(f"{self.exercise}: the hidden check of {q.id!r} registers no probe")
            found[q.id] = collected
        return found, ref_ns


def run_seed(seed: int, *parts) -> int:
    """A 63-bit seed from the grading run's seed and a probe's names (stable across machines)."""
    digest = hashlib.sha256(repr((int(seed),) + parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def load_hidden_checks(tests_dir: str | Path = HIDDEN_TESTS_DIR) -> dict[str, HiddenChecks]:
    tests_dir = Path(tests_dir)
    found = {p.stem: HiddenChecks.load(p) for p in sorted(tests_dir.glob("*.json"))}
    if not found:
        raise FileNotFoundError(f"no hidden checks (*.json) in {tests_dir}; run `dlstudio-lite exercises build` first")
    return found


class Exam:
    """One exercise's probes for one grading run (``seed``), encoded once and judged for every submission.

    At construction the reference solution answers every probe here, in the grader: its
    answers set each question's reply :class:`.reply.Budget`, and must pass the verdicts
    (a check that fails its own solution for this seed stops the batch, naming the seed).
    """

    def __init__(self, checks: HiddenChecks, seed: int):
        self.checks, self.seed = checks, int(seed)
        self.probes, reference = checks.probes(self.seed)
        self.tensors: dict[str, torch.Tensor] = {}
        self.specs: dict[str, list[dict]] = {
            qid: [P.encode_call(c, self.tensors) for p in plist for c in p.calls] for qid, plist in self.probes.items()}
        self.budgets: dict[str, Budget] = {}
        for qid, (records, tensors) in self.run_locally(reference).items():
            head = len(json.dumps(records)) + 80 * len(tensors)
            sizes = [t.numel() for t in tensors.values()]
            self.budgets[qid] = Budget.around(max(sizes, default=0), sum(sizes), head)
            verdict = self.judge(qid, records, tensors)
            if verdict != "passed":
                raise RuntimeError(f"{checks.exercise}: the reference solution fails the hidden check of {qid!r} "
                                   f"with this run's seed {self.seed}: {verdict}")

    def run_locally(self, ns: dict) -> dict[str, tuple[list, dict]]:
        """Every probe called on the definitions in ``ns``, in this process: {question: (records, tensors)}.

        Trusted code only (the reference, or the tests' own notebooks): it runs unsandboxed.
        """
        from .runner import _Encoder, _error, _Probe, probe_ops

        ops, out = probe_ops(torch), {}
        with torch.random.fork_rng():
            for qid, specs in self.specs.items():
                encoder, records = _Encoder(torch, 2**62, 2**62), []
                for spec in specs:
                    try:
                        records.append(_Probe(P.json_spec(spec), self.tensors, ns, torch, ops, torch.autograd.grad).run(encoder))
                    except Exception as err:
                        records.append({"raised": _error(err)})
                out[qid] = (records, encoder.tensors)
        return out

    def job(self, cells: list[str], limits, marker: str, sys_path: list[str]) -> bytes:
        """The bytes of the job file the runner reads: the student's cells and the probes' inputs."""
        meta = {"cells": cells, "marker": marker, "cell_s": float(limits.cell_s),
                "probe_s": float(limits.probe_s), "sys_path": sys_path,
                "questions": [{"id": qid, "probes": [P.json_spec(s) for s in specs],
                               "tensor_elements": self.budgets[qid].tensor_elements,
                               "total_elements": self.budgets[qid].total_elements}
                              for qid, specs in self.specs.items()]}
        buf = io.BytesIO()
        torch.save({"meta": P.dumps(meta), "t": self.tensors}, buf)
        return buf.getvalue()

    def judge(self, qid: str, record_list, tensors: dict) -> str:
        """'passed', or the first reason a probe of ``qid`` failed (one sentence for the student).

        A hidden probe's reason is cut to its first line: its inputs change with every run, so
        the feedback says which property failed, never the values (see ``instructor/README.md``).
        """
        plist, specs = self.probes[qid], self.specs[qid]
        if not isinstance(record_list, list) or len(record_list) != len(specs):
            return "not tested: the notebook's report for this question was incomplete"
        at = 0
        for probe in plist:
            results = []
            for call, spec in zip(probe.calls, specs[at:at + len(probe.calls)]):
                record = record_list[at]
                at += 1
                if not isinstance(record, dict):
                    return "not tested: the notebook's report for this question was malformed"
                try:
                    result = P.Result(call, record, tensors, spec)
                except (P.ProtocolError, KeyError, TypeError, ValueError, AttributeError):
                    return "not tested: the notebook's report for this question was malformed"
                if result.raised is not None:
                    return f"calling {call.name} raised {result.raised}"
                results.append(result)
            try:
                probe.verdict(results[0] if probe.single else tuple(results), **probe.context)
            except AssertionError as err:
                message = str(err) or f"a check of {probe.calls[0].name} failed"
                return message if probe.visible else message.strip().split("\n", 1)[0][:500]
            except Exception as err:  # the answer had the wrong kind (an int where a tensor was due, ...)
                return (f"the value returned by {probe.calls[0].name} could not be checked "
                        f"({type(err).__name__}: {str(err)[:300]})")
        return "passed"
