"""What every search method provides to the shared runner (``jaxnas.run``).

The files a search run writes beside the loop's (``SearchWorkdir``) belong to the runs,
not to the methods: :mod:`jaxnas.search_workdir`.

A method is built from its config by ``jaxnas.search.build`` through the one setup of
``jaxnas.search.method.SearchMethodBase`` (the method contract).  All state lives
in one pytree; ``train_step`` and ``eval_step`` are pure and jitted, so the
runner, checkpointing and ``jax.grad``/``jax.vmap`` users see plain functions.

Batches are ``(images, labels)``: float32 ``(B, H, W, C)`` normalised NHWC
images and int32 ``(B,)`` labels.
"""

from __future__ import annotations

from typing import Any, Protocol

import jax
import numpy as np

from jaxnas.spaces.darts_genotype import Genotype

Batch = tuple[jax.Array, jax.Array]
Metrics = dict[str, jax.Array]


class SearchMethod(Protocol):
    """The interface the runner uses.  Every method implements it by the method
    contract: a subclass of ``jaxnas.search.method.SearchMethodBase`` that overrides
    hooks (``check_config``, ``make_mixer``, ``setup``, the two optimisers, the update
    rule ``_train_step``, ...), never the constructor; see that module's docstring."""

    name: str
    primitives: tuple[str, ...]

    def init(self, rng: jax.Array, sample_images: np.ndarray) -> Any:
        """Return the initial state pytree (weights, arch, optimiser states, step, rng)."""

    def train_step(self, state: Any, train_batch: Batch, valid_batch: Batch) -> tuple[Any, Metrics]:
        """One search iteration: arch update on ``valid_batch`` and weight update on
        ``train_batch`` (order and details are the method's own). Jitted."""

    def eval_step(self, state: Any, batch: Batch) -> Metrics:
        """``{"loss", "accuracy"}`` of the supernet in inference mode. Jitted."""

    def arch_weights(self, state: Any) -> dict[str, np.ndarray]:
        """Human-readable architecture weights per cell type, e.g. softmax(alpha)
        ``{"normal": (14, n_ops), "reduce": (14, n_ops)}``."""

    def genotype(self, state: Any) -> Genotype:
        """The discrete architecture the current state derives to."""
