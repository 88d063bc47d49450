"""Atomic file writes: what a kill leaves is the old file or the new one, never half of one.

Used for every small file a run or a space writes (configs, summaries, genotypes,
metrics rewrites); needs no jax, so the spaces stay importable without it.
"""

from __future__ import annotations

import os

__all__ = ["write_text"]


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` atomically (a temporary file beside it, then
    ``os.replace``); missing parent folders are created."""
    path = os.fspath(path)
    parent = os.path.dirname(path)
    if parent:
        os.makedirs(parent, exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)
