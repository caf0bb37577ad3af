"""Instructor tooling: build the exercises, grade submissions in a sandbox, publish a release.

Kept out of ``dlstudio_lite/__init__.py`` on purpose: students import the model package,
never the grader. Entry points: ``dlstudio-lite exercises build|release`` and
``dlstudio-lite grade`` (see :mod:`.commands`); in Python, :func:`.grader.grade_submissions`
and :func:`.report.write_report`. Importing this package loads nothing heavy.
"""
