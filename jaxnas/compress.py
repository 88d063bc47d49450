"""``jaxnas compress``: prune an ordinary network to a physically smaller one.

Compression methods are config kinds like the search methods (:data:`jaxnas.config.KINDS`,
command ``"compress"``): a compress config has ``method`` set to one of
:data:`COMPRESSORS` and is loaded and checked by
:func:`jaxnas.config.load_config` (the method's module provides ``default_config()``).
Each module also provides ``compress(config, workdir, *, resume, progress) -> dict``,
which writes its results under ``workdir`` and returns a JSON-able summary.

Methods:
  * ``rarts-width``, ``netslim``, ``random`` (:mod:`jaxnas.width_compress`): channel
    pruning of CNNs: RARTS width search (thesis Algorithm 3), Network Slimming and
    random pruning at the same ratio; fine-tuning with distillation.
  * ``sidt`` (:mod:`jaxnas.width_compress`): the thesis's dimension search for vision
    transformers (head dimensions and MLP units).
  * ``bayes-group`` (:mod:`jaxnas.bayes_compress`): BayesNAS structured compression
    with group priors (BayesNAS App. B, Algorithm 3).
"""

from __future__ import annotations

import importlib
from typing import Any

import ml_collections

from jaxnas.config import KINDS

__all__ = ["COMPRESSORS", "compress", "compressor_module"]

#: compress method -> module providing ``default_config()`` and ``compress(...)``: the
#: kinds of :data:`jaxnas.config.KINDS` that ``jaxnas compress`` runs (registered there).
COMPRESSORS: dict[str, str] = {
    name: kind.module for name, kind in KINDS.items() if kind.command == "compress"
}


def compressor_module(method: str):
    """The module implementing compress method ``method`` (ValueError if unknown)."""
    if method not in COMPRESSORS:
        raise ValueError(
            f"unknown compress method {method!r} (known: {', '.join(sorted(COMPRESSORS))})"
        )
    return importlib.import_module(COMPRESSORS[method])


def compress(config: ml_collections.ConfigDict, workdir: str, **run: Any) -> dict[str, Any]:
    """Run the compress method ``config.method``; returns its summary dict.  ``run``:
    ``resume``, ``progress``, handed to the method module's ``compress`` as they are."""
    return compressor_module(config.method).compress(config, workdir, **run)
