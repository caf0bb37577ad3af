"""The ``dlstudio-lite`` sub-commands, one module each; ``cli.py`` lists them.

Each module has ``add_cli(subparsers)`` and keeps argument parsing and file output away
from the concept modules (``vqvae.py``, ``prior.py``, ...), which stay short.
"""
