"""DARTS' recurrent search cell with its edges mixed by an edge mixer (any method's).

DARTS' ``rnn/model_search.py`` (Liu et al., 2019, Sec. 2.1 and Eq. 1): with the
mixer's edge weights ``w = mixer.edge_weights(arch, rng, step_input)`` ``(36, n_ops)``
(DARTS: ``softmax(alpha)`` over ``none, tanh, relu, sigmoid, identity``; SparseNAS: the
free ``A`` over the 4 activations, :class:`jaxnas.search.sparsenas.LinearMixer`; GDAS: a
hard Gumbel sample), node ``i = 1..steps`` of one time step is

    s_i = sum_{j < i} sum_f w[(i, j), f] hw_f(s_j),
    hw_f(s_j) = s_j + sigmoid(c) (f(k) - s_j),   [c, k] = (s_j m_h) W_i

(:func:`jaxnas.rnn.model.supernet_states`, the one implementation of the cell; the
``none`` column adds exactly zero, its op is never computed).

The mixer's hooks (:class:`jaxnas.supernet.Mixer`) in this cell:

* ``edge_weights``: always, once per forward pass (one sample per window for a
  stochastic mixer: its ``rng``, as one draw per cell type and pass in the image
  supernet);
* ``active``: honoured by value and gradient: the inactive ops' ``hw_f`` are replaced
  by exact zeros (every activation is still evaluated: they are cheap elementwise
  functions, and the node's matmul is shared by its ops), so GDAS' cell is the
  discrete cell of its sample and ``dL/dw_f = 0`` for an unsampled op;
* ``combine``: a mixer whose combine is not the weighted sum
  (``Mixer.combines_by_weighted_sum``) combines each edge's op outputs itself
  (vmapped over the node's edges; GDAS' ``"bias"`` gradient); the weighted sum is one
  ``einsum`` over a node's edges and ops (SparseNAS' cell, bit for bit);
* ``edge_input`` (BayesNAS' zero-op gate on the edge input) and ``combiner`` (ASM-NAS'
  per-edge attention module, a Flax module with weights of its own) have no
  counterpart in this pure-function cell: :func:`check_mixer` raises a one-line
  ``ValueError`` naming the mixer and the space rather than ignoring them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax

from jaxnas.rnn.genotype import RNN_OPS, RNN_PRIMITIVES, STEPS, n_edges
from jaxnas.rnn.model import CellFn, Dropouts, init_supernet_params, lm_forward, supernet_cell
from jaxnas.supernet import Mixer

__all__ = ["UNSUPPORTED_HOOKS", "RNNSuperNet", "check_mixer", "check_primitives"]

#: the mixer hooks the recurrent cell cannot honour, and why
UNSUPPORTED_HOOKS = {
    "edge_input": "the cell's ops read the predecessor state s_j itself, not a per-edge input",
    "combiner": "a per-edge Flax module with weights of its own has no place in the "
    "pure-function cell",
}


def check_mixer(mixer: Mixer) -> None:
    """One-line ``ValueError`` if ``mixer`` overrides a hook of :data:`UNSUPPORTED_HOOKS`
    (BayesNAS' ``BayesMixer``: ``edge_input``; ASM-NAS' ``ASMMixer``: ``combiner``)."""
    for hook, why in UNSUPPORTED_HOOKS.items():
        if getattr(type(mixer), hook) is not getattr(Mixer, hook):
            raise ValueError(
                f"the rnn space cannot use {type(mixer).__name__}: its {hook} hook is not "
                f"supported in the recurrent cell ({why}); a mixer there may override "
                "edge_weights, active and combine"
            )


def check_primitives(primitives: Sequence[str]) -> tuple[str, ...]:
    """``primitives`` as a tuple of distinct names of DARTS' RNN primitives with at least
    one activation (``"none"`` optional: DARTS' softmax includes it, SparseNAS' ``A``
    does not), else a one-line ``ValueError``."""
    prims = tuple(primitives)
    unknown = [p for p in prims if p not in RNN_PRIMITIVES]
    if unknown or len(set(prims)) != len(prims) or not set(prims) - {"none"}:
        raise ValueError(
            f"the rnn space's ops are distinct names of {RNN_PRIMITIVES} with at least one "
            f"activation, got {prims}"
        )
    return prims


@dataclasses.dataclass(frozen=True)
class RNNSuperNet:
    """DARTS' recurrent language-model supernet whose edges mix their ops by ``mixer``.

    A frozen dataclass of pure functions (the weights are
    :func:`jaxnas.rnn.model.init_supernet_params`' dict, the architecture the dict
    ``{"recurrent": (n_edges, n_ops)}``), not a Flax module: the recurrent cell is a
    set of pure functions (:mod:`jaxnas.rnn.model`).

    Attributes:
      mixer: how an edge mixes its ops (module docstring for the hooks).
      vocab_size: ``V``, the tied embedding's rows and the decoder's outputs.
      size: ``H`` = embedding size = hidden size.
      steps: intermediate nodes (``n_edges = steps (steps + 1) / 2``).
      primitives: the ops of the columns (:func:`check_primitives`).
      batchnorm: DARTS' affine-free BN after ``s_0`` and every node (the search cell's).
      scan_nodes: one compiled node body (:func:`jaxnas.rnn.model.supernet_states`).
    """

    mixer: Mixer
    vocab_size: int
    size: int
    steps: int = STEPS
    primitives: tuple[str, ...] = RNN_OPS
    batchnorm: bool = True
    scan_nodes: bool = False

    def __post_init__(self):
        check_mixer(self.mixer)
        object.__setattr__(self, "primitives", check_primitives(self.primitives))

    @property
    def arch_shape(self) -> tuple[int, int]:
        """``(n_edges, n_ops)``: one row per edge ``s_j -> s_i`` (``edge_index(i, j)``)."""
        return n_edges(self.steps), len(self.primitives)

    def init(self, rng: jax.Array) -> dict[str, Any]:
        """The weights: ``embedding (V, H)``, ``bias (V,)``, ``w0 (2H, 2H)``, ``ws (steps,
        H, 2H)`` (DARTS' uniform initialisation)."""
        return init_supernet_params(rng, self.vocab_size, self.size, self.steps)

    def init_arch(self, rng: jax.Array) -> dict[str, jax.Array]:
        """``{"recurrent": mixer.init_arch(rng, arch_shape)}``."""
        return {"recurrent": self.mixer.init_arch(rng, self.arch_shape)}

    def edge_weights(
        self, arch: dict[str, jax.Array], rng: jax.Array | None = None, step_input: Any = None
    ) -> jax.Array:
        """``w = mixer.edge_weights(arch["recurrent"], rng, step_input)`` ``(n_edges,
        n_ops)``; ``rng`` reaches only a ``stochastic`` mixer (else ``None``)."""
        a = arch["recurrent"]
        if a.shape != self.arch_shape:
            raise ValueError(f"arch['recurrent'] has shape {a.shape}, expected {self.arch_shape}")
        return self.mixer.edge_weights(a, rng if self.mixer.stochastic else None, step_input)

    def cell(
        self,
        params: dict[str, Any],
        arch: dict[str, jax.Array],
        rng: jax.Array | None = None,
        step_input: Any = None,
    ) -> CellFn:
        """One step ``cell(x_t, h, x_mask, h_mask) -> h_t (B, H)``: the mean of ``s_1 ..
        s_steps`` with the edge weights of :meth:`edge_weights`, the mixer's ``active``
        ops and its ``combine`` (module docstring), drawn once for every time step."""
        w = self.edge_weights(arch, rng, step_input)
        mixer = self.mixer
        active = jax.vmap(mixer.active)(w)  # (n_edges, n_ops) bool, or None: every op
        combine = None if mixer.combines_by_weighted_sum() else mixer.combine
        return supernet_cell(
            params,
            w,
            ops=self.primitives,
            batchnorm=self.batchnorm,
            scan_nodes=self.scan_nodes,
            active=active,
            combine=combine,
        )

    def apply(
        self,
        params: dict[str, Any],
        arch: dict[str, jax.Array],
        tokens: jax.Array,
        hidden: jax.Array,
        length: jax.Array,
        *,
        dropouts: Dropouts,
        rng: jax.Array | None,
        train: bool,
        mixer_rng: jax.Array | None = None,
        step_input: Any = None,
    ) -> tuple[jax.Array, jax.Array, jax.Array]:
        """:func:`jaxnas.rnn.model.lm_forward` of :meth:`cell` over a padded window
        ``tokens (B, T)``: ``(logits (B, T, V), hidden (B, H), raw outputs (B, T, H))``;
        ``rng`` draws the dropout masks, ``mixer_rng`` a stochastic mixer's sample."""
        cell = self.cell(params, arch, mixer_rng, step_input)
        return lm_forward(
            params, cell, tokens, hidden, length, dropouts=dropouts, rng=rng, train=train
        )
