"""Optional dependencies: imported where they are used, through :func:`require`.

``pip install jaxnas`` installs the core (jax, flax, optax, chex, orbax, ml-collections,
numpy, tqdm): enough for :mod:`jaxnas.optim`, :mod:`jaxnas.curvature`, the search
methods and the models. The rest are extras (``pyproject.toml``)::

    jaxnas[data]   tensorflow-datasets (CIFAR, ImageNet via tfds), scikit-learn (DIGITS),
                   pillow (the ImageNet loader's transforms)
    jaxnas[viz]    matplotlib (plots, cell drawings), tensorboardX (TensorBoard events)
    jaxnas[torch]  PyTorch (benchmarks/vs_reference.py; weight import and export)
    jaxnas[all]    everything but torch (what ``make setup`` installs, with [dev])

A missing one is a one-line :class:`MissingExtraError` (an ``ImportError``) naming the
extra, e.g. ``plotting needs matplotlib: pip install 'jaxnas[viz]'``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["EXTRAS", "MissingExtraError", "require"]

#: Top-level module -> (the distribution that provides it, the jaxnas extra that installs it).
EXTRAS: dict[str, tuple[str, str]] = {
    "tensorflow_datasets": ("tensorflow-datasets", "data"),
    "sklearn": ("scikit-learn", "data"),
    "PIL": ("pillow", "data"),
    "matplotlib": ("matplotlib", "viz"),
    "tensorboardX": ("tensorboardX", "viz"),
    "torch": ("torch", "torch"),
}


class MissingExtraError(ImportError):
    """An optional dependency is not installed; the message says which extra installs it."""


def require(module: str, what: str) -> ModuleType:
    """Import ``module`` (e.g. ``"matplotlib.figure"``), which ``what`` needs.

    Raises:
      MissingExtraError: ``module``'s package is not installed: ``"<what> needs <package>:
        pip install 'jaxnas[<extra>]'"``. An ``ImportError`` raised inside an installed
        package (a broken install, a missing dependency of its own) propagates unchanged.
    """
    root = module.partition(".")[0]
    if root not in EXTRAS:
        raise ValueError(f"{root!r} is not an optional dependency of jaxnas ({sorted(EXTRAS)})")
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name is None or e.name.partition(".")[0] != root:
            raise
        package, extra = EXTRAS[root]
        raise MissingExtraError(f"{what} needs {package}: pip install 'jaxnas[{extra}]'") from None
