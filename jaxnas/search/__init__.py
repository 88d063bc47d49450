"""Search methods, one module each; ``build`` makes one from a config.

A method is registered once, by its line in :data:`jaxnas.config.KINDS` (config name ->
its module and what runs it; :data:`jaxnas.config.METHODS`: the modules).  ``METHODS``
here maps each image-search method's name to its class: the
:class:`~jaxnas.search.method.SearchMethodBase` subclass in that module whose ``name``
is the config name (found, not listed a second time).
"""

from __future__ import annotations

import ml_collections

from jaxnas.config import METHODS as CONFIG_KINDS
from jaxnas.config import method_module
from jaxnas.search.base import SearchMethod
from jaxnas.search.method import SearchMethodBase


def method_class(name: str) -> type[SearchMethodBase] | None:
    """The image-search method class registered as ``name`` in
    :data:`jaxnas.config.METHODS`, or None when that config kind is not one (a
    retraining, compression or recurrent-search config)."""
    module = method_module(name)
    if not module.__name__.startswith(f"{__name__}."):
        return None
    found = [
        obj
        for obj in vars(module).values()
        if isinstance(obj, type)
        and issubclass(obj, SearchMethodBase)
        and obj.__module__ == module.__name__
        and getattr(obj, "name", None) == name
    ]
    return found[0] if found else None


#: name -> class of every image-search method (built from :data:`jaxnas.config.METHODS`)
METHODS: dict[str, type[SearchMethodBase]] = {
    name: cls for name in CONFIG_KINDS if (cls := method_class(name)) is not None
}


def build(
    config: ml_collections.ConfigDict,
    *,
    steps_per_epoch: int,
    num_classes: int,
    input_shape: tuple[int, int, int],
) -> SearchMethod:
    """The search method ``config.method`` set up for this data."""
    try:
        cls = METHODS[config.method]
    except KeyError:
        raise ValueError(
            f"unknown method {config.method!r}; known: {', '.join(sorted(METHODS))}"
        ) from None
    return cls(
        config, steps_per_epoch=steps_per_epoch, num_classes=num_classes, input_shape=input_shape
    )


__all__ = ["METHODS", "SearchMethod", "build", "method_class"]
