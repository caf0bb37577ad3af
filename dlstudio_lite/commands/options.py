"""Command-line flags generated from the dataclasses and constructor signatures that
define them, so that a default or a help text is written once and cannot drift.

``add_dataclass(group, TrainConfig, defaults)`` adds ``--batch-size`` and friends (help from
the field's ``metadata["help"]``); ``add_signature(group, VQVAE, defaults)`` adds one flag
per constructor argument (help from the class docstring's ``name: text`` lines). The
``defaults`` are a recipe's settings (recipes.py); ``%(default)s`` shows the value in use.
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import re
import typing
from typing import Any

from ..config import parameters
from ..optim import OPTIMIZERS, SCHEDULERS

# The names some TrainConfig fields accept, listed in their flags' help.
TRAIN_CHOICES = {"optimizer": list(OPTIMIZERS), "scheduler": ["none", *SCHEDULERS],
                 "amp": ["auto", "bf16", "fp16", "off"]}


def positive_int(text: str) -> int:
    """A whole number of at least 1 (a count of threads, of jobs)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {value}")
    return value


def key_value(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` with VALUE read as a Python literal when it is one."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    try:
        value = ast.literal_eval(value)
    except (ValueError, SyntaxError):
        pass  # keep it as a string
    return key.strip(), value


def _clearing(other: str) -> type:
    """An action that stores its value and clears ``other`` (``--epochs`` clears ``steps``,
    which a recipe usually sets and which would otherwise win)."""
    class Clearing(argparse.Action):
        def __call__(self, parser, namespace, values, option_string=None):
            setattr(namespace, self.dest, values)
            setattr(namespace, other, None)
    return Clearing


def _add(group, name: str, annotation, default, help_text: str, choices=None,
         clears: str | None = None) -> None:
    flag = "--" + name.replace("_", "-")
    args = typing.get_args(annotation)
    base = next((a for a in args if a is not type(None)), annotation) if args else annotation
    origin = typing.get_origin(base) or base
    if "default" not in help_text:
        help_text = f"{help_text} (default: %(default)s)".strip()
    if base is bool:
        if default is True:
            group.add_argument("--no-" + flag[2:], dest=name, action="store_false",
                               help=help_text.replace("%(default)s", "on"))
        else:
            group.add_argument(flag, dest=name, action="store_const", const=True,
                               default=default, help=help_text)
    elif origin is dict:
        group.add_argument(flag, dest=name, action="append", type=key_value, default=None,
                           metavar="KEY=VALUE", help=help_text.replace(" (default: %(default)s)", ""))
    elif origin in (tuple, list):
        inner = (typing.get_args(base) or (str,))[0]
        group.add_argument(flag, dest=name, nargs=len(typing.get_args(base)) or "+", type=inner,
                           default=default, help=help_text)
    else:
        kind = str.lower if base is str and choices else base
        group.add_argument(flag, dest=name, type=kind, default=default, help=help_text,
                           choices=list(choices) if choices else None,
                           **({"action": _clearing(clears)} if clears else {}))


def add_dataclass(group, cls, defaults: dict | None = None, skip=(), choices=None,
                  clears: dict | None = None) -> None:
    """One flag per field of the dataclass ``cls``; ``clears``: {field: field it sets to None}."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        default = f.default if f.default is not dataclasses.MISSING else None
        default = (defaults or {}).get(f.name, default)
        _add(group, f.name, hints[f.name], default, f.metadata.get("help", ""),
             (choices or {}).get(f.name), (clears or {}).get(f.name))


def from_args(cls, args: argparse.Namespace, **fixed):
    """An instance of the dataclass ``cls`` from parsed flags (``fixed`` wins)."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)
              if hasattr(args, f.name)}
    factories = {f.name: f.default_factory for f in dataclasses.fields(cls)
                 if f.default_factory is not dataclasses.MISSING}
    for name, value in values.items():
        if isinstance(value, list) and value and isinstance(value[0], tuple):
            values[name] = dict(value)  # repeated KEY=VALUE
        elif value is None and name in factories:
            values[name] = factories[name]()
    return cls(**{**values, **fixed})


def _docs(cls) -> dict[str, str]:
    """``name: text`` lines of the docstrings of ``cls`` and its bases."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        for line in (inspect.getdoc(klass) or "").splitlines():
            m = re.match(r"\s*([a-z_]+(?:, [a-z_]+)*): (.+)", line)
            if m:
                for name in m.group(1).split(", "):
                    docs[name] = m.group(2).rstrip(".")
    return docs


def add_signature(group, cls, defaults: dict | None = None, skip=(), choices=None) -> list[str]:
    """One flag per constructor argument of ``cls`` with a plain type; returns their names."""
    docs, names = _docs(cls), []
    for name, p in parameters(cls).items():
        if name in skip or p.default is inspect.Parameter.empty:
            continue
        annotation = p.annotation
        base = [a for a in typing.get_args(annotation) if a is not type(None)] or [annotation]
        if base[0] not in (int, float, str, bool):
            continue  # dicts and the like: --set KEY=VALUE
        _add(group, name, annotation, (defaults or {}).get(name, p.default), docs.get(name, ""),
             (choices or {}).get(name))
        names.append(name)
    return names
