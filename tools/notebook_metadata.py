"""Give the lecture notebooks the metadata JupyterLab itself writes, so they open clean.

JupyterLab rewrites a kernelspec that differs from its own (it showed every lecture as
modified the moment it opened), and jupytext rewrites a ``.py`` header that records another
jupytext version. So each lecture pair stores exactly ``KERNELSPEC`` and keeps the jupytext
version out of the ``.py`` header, as the generated exercises do.

    python tools/notebook_metadata.py            # fix lectures/*.py and lectures/*.ipynb
    python tools/notebook_metadata.py --check    # only list what differs (exit 1 if any)

Re-run it after merging lecture edits; ``tests/test_notebooks.py`` fails until you do.
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
JUPYTEXT = {"formats": "ipynb,py:percent", "notebook_metadata_filter": "-jupytext.text_representation"}
LECTURES = ROOT / "lectures"


def problems(path: Path) -> list[str]:
    """What differs in one notebook (``.ipynb`` or jupytext ``.py``) from what JupyterLab
    writes (empty when fine)."""
    import jupytext

    name = str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)
    found = []
    kernelspec = jupytext.read(path).metadata.get("kernelspec")
    if kernelspec != KERNELSPEC:
        found.append(f"{name}: kernelspec is {kernelspec}, JupyterLab writes {KERNELSPEC}")
    if path.suffix == ".py" and "jupytext_version:" in path.read_text().split("\n# ---\n")[0]:
        found.append(f"{name}: the jupytext header records a jupytext version; other versions rewrite it")
    return found


def fix(folder: Path = LECTURES) -> list[Path]:
    """Rewrite the metadata of every pair in ``folder``; returns the files changed."""
    import jupytext
    import nbformat

    changed = []
    for py in sorted(folder.glob("*.py")):
        ipynb = py.with_suffix(".ipynb")
        # the .ipynb first, then its .py, so the text file stays the newer one (jupytext's rule)
        for path, read, writes in [
            (ipynb, lambda p: nbformat.read(p, as_version=4), lambda nb: nbformat.writes(nb) + "\n"),
            (py, jupytext.read, lambda nb: jupytext.writes(nb, fmt="py:percent")),
        ]:
            nb = read(path)
            nb.metadata["kernelspec"] = dict(KERNELSPEC)
            jt = {k: v for k, v in nb.metadata.get("jupytext", {}).items() if k != "text_representation"}
            nb.metadata["jupytext"] = {**jt, **JUPYTEXT}
            text = writes(nb)
            if text != path.read_text():
                path.write_text(text)
                changed.append(path)
    return changed


def check(folder: Path = LECTURES) -> list[str]:
    found = []
    for py in sorted(folder.glob("*.py")):
        found += problems(py) + problems(py.with_suffix(".ipynb"))
    return found


if __name__ == "__main__":
    if sys.argv[1:] == ["--check"]:
        listed = check()
        print("\n".join(listed) or "lecture metadata is as JupyterLab writes it")
        sys.exit(1 if listed else 0)
    for path in fix():
        print("fixed", path.relative_to(ROOT))
