"""Claims that check themselves: a lecture's sentences about its results.

A sentence such as "the KL falls to 400 nats and then rises" is only true of one run. A
lecture states it through :func:`say` (the sentence is rendered from the computed values)
and backs it with :func:`claim` (the sentence is asserted), so that a later change to a
default, a recipe or a checkpoint that makes it false fails the notebook instead of
leaving a wrong sentence behind.

Quick mode trains tiny models for a few steps, so most result claims cannot hold there:
a claim is checked in quick mode only when it is marked ``quick=True`` (facts that hold
whatever the training, such as shapes, identities or exact equalities). Every claim is
counted; :func:`summary` tells how many were checked and how many skipped.
"""
from __future__ import annotations

from dataclasses import dataclass

from .config import quick_mode


class ClaimError(AssertionError):
    """A sentence of the lecture is no longer true of its outputs."""


@dataclass
class _Tally:
    checked: int = 0
    skipped: int = 0


_TALLY = _Tally()


def claim(holds, sentence: str, *, quick: bool = False, detail: str = "") -> None:
    """Assert that ``sentence`` (as the lecture states it) is true of the outputs.

    ``holds`` is the check (anything ``bool()`` accepts, e.g. a comparison of computed
    numbers). In normal mode a false claim raises :class:`ClaimError` quoting the
    sentence and ``detail`` (the values that broke it); in quick mode it is checked only
    when ``quick=True``.
    """
    if not isinstance(sentence, str) or not sentence.strip():
        raise ValueError(f"a claim needs the sentence it checks, got {sentence!r}")
    if quick_mode() and not quick:
        _TALLY.skipped += 1
        return
    _TALLY.checked += 1
    if not bool(holds):
        message = f"The lecture says: {sentence!r}, but its outputs do not show it."
        if detail:
            message += f" ({detail})"
        raise ClaimError(message)


def say(markdown: str, *checks, quick: bool = False) -> None:
    """Show ``markdown`` (a sentence rendered from computed values) and assert ``checks``.

    Each check is either a bool, asserted with the whole text as its sentence, or a pair
    ``(holds, sentence)`` for a check that backs one part of the text.
    """
    for check in checks:
        if isinstance(check, tuple):
            holds, sentence = check
            claim(holds, sentence, quick=quick)
        else:
            claim(check, markdown, quick=quick)
    try:
        from IPython.display import Markdown, display
    except ImportError:  # outside Jupyter (a script run of the .py twin): plain text
        print(markdown)
    else:
        display(Markdown(markdown))


def summary() -> str:
    """One line: how many claims this kernel checked and skipped so far."""
    text = f"{_TALLY.checked} claims checked"
    if _TALLY.skipped:
        text += f", {_TALLY.skipped} skipped in quick mode"
    return text


def reset() -> None:
    """Start counting afresh (tests)."""
    _TALLY.checked = _TALLY.skipped = 0
