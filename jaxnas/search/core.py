"""The space-independent part of the method contract, shared by every search method.

A method on any space (the image supernets, :class:`~jaxnas.search.method.SearchMethodBase`;
DARTS' recurrent cell, :class:`~jaxnas.search.sparsenas_rnn.SparseNASRNN`) is a
subclass of :class:`MethodCore` whose constructor stores what its data gives (classes
and input shape, or the vocabulary) and calls :meth:`MethodCore.set_up`, the one setup:

1. ``steps_per_epoch >= 1``; ``self.config``, ``self.steps_per_epoch``;
2. :meth:`~MethodCore.setup_space`: what the space sets up before the checks read it;
3. :meth:`~MethodCore.check_config`: one-line ``ValueError`` on a bad setting, before
   anything is built;
4. :meth:`~MethodCore.build_network`: the family's network(s) and schedules;
5. :meth:`~MethodCore.setup`: what the method adds;
6. ``self.w_tx`` = :meth:`~MethodCore.weight_optimizer`, ``self.a_tx`` =
   :meth:`~MethodCore.arch_optimizer`;
7. ``jax.jit`` of every name in ``entry_points`` (``name`` is ``jax.jit(self._name)``).

Data parallelism is here too, never a method's: :meth:`~MethodCore.mesh_steps` and
:meth:`~MethodCore.mesh_entry` compile the same entry points for a 1-D ``"data"`` mesh
(:mod:`jaxnas.parallel`) with the layout :meth:`~MethodCore.entry_shardings` gives: by
default the state (:meth:`~MethodCore.state_sharding`) and every other argument
replicated but the batches (``batch_arguments``), split along their first axis.
:func:`next_state` moves any method's state one step on.
"""

from __future__ import annotations

import inspect
from typing import Any

import jax
import ml_collections
import optax

from jaxnas import parallel

__all__ = ["MethodCore", "next_state"]


def next_state(state: Any, rng: jax.Array, **fields: Any) -> Any:
    """``state`` (a ``flax.struct`` pytree with ``step`` and ``rng`` fields) one step on:
    ``step + 1``, the next key ``rng`` (typed, stored as key data) and the new ``fields``;
    every other field kept."""
    return state.replace(step=state.step + 1, rng=jax.random.key_data(rng), **fields)


class MethodCore:
    """The one setup and the data-parallel entry points of a search method (module
    docstring).

    Hooks: ``setup_space``, ``check_config``, ``build_network``, ``setup``,
    ``weight_optimizer``, ``arch_optimizer``, the entry points' ``_<name>`` (the update
    rule ``_train_step`` and ``_eval_step``), ``state_sharding``, ``entry_shardings``;
    class attributes ``name``, ``entry_points``, ``batch_arguments``.
    """

    name: str = ""

    #: the jitted entry points; each ``name`` is ``jax.jit(self._name)``, made once in
    #: :meth:`set_up`
    entry_points: tuple[str, ...] = ("train_step", "eval_step")

    #: entry point -> the positions of its batch arguments (split over a mesh's devices
    #: by :meth:`mesh_entry`; every other argument is replicated)
    batch_arguments: dict[str, tuple[int, ...]] = {
        "train_step": (1, 2),
        "step_with": (1, 2),
        "eval_step": (1,),
    }

    def set_up(self, config: ml_collections.ConfigDict, steps_per_epoch: int) -> None:
        """The one setup (module docstring), called by a family's constructor after it
        stored what the data gives; a method overrides hooks, never this."""
        if int(steps_per_epoch) < 1:
            raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
        self.config = config
        self.steps_per_epoch = int(steps_per_epoch)
        self.setup_space()
        self.check_config()
        self.build_network()
        self.setup()
        self.w_tx = self.weight_optimizer()
        self.a_tx = self.arch_optimizer()
        for name in self.entry_points:
            setattr(self, name, jax.jit(getattr(self, "_" + name)))

    # ---- what a family or a method changes (hooks of set_up) --------------------------

    def setup_space(self) -> None:
        """What the search space sets up before :meth:`check_config` reads it."""

    def check_config(self) -> None:
        """Raise ``ValueError`` (one line) on a bad setting of this method."""

    def build_network(self) -> None:
        """The network(s) and schedules every method of the family builds."""

    def setup(self) -> None:
        """What the method builds besides its family's network and the two optimisers."""

    def weight_optimizer(self) -> optax.GradientTransformation:
        """The optimiser of the network's weights (``"params"``)."""
        raise NotImplementedError

    def arch_optimizer(self) -> optax.GradientTransformation:
        """The optimiser of the architecture variables (``"arch"``)."""
        raise NotImplementedError

    # ---- data parallelism -----------------------------------------------------------

    def state_sharding(self, mesh: Any) -> Any:
        """The state's layout on the data mesh ``mesh``, a pytree prefix of the state:
        replicated (a method whose state carries per-row arrays splits those)."""
        return parallel.replicated(mesh)

    def entry_shardings(self, name: str, mesh: Any) -> tuple[tuple[Any, ...], Any]:
        """``(in_shardings, out_shardings)`` of the entry point ``name`` on ``mesh``: the
        first argument (the state) by :meth:`state_sharding`, the arguments at
        ``batch_arguments[name]`` split along their first axis, every other argument
        (``step_with``'s hyperparameters) and every output replicated."""
        rep, data = parallel.replicated(mesh), parallel.batch_sharding(mesh)
        batch = self.batch_arguments[name]
        count = len(inspect.signature(getattr(self, "_" + name)).parameters)
        state = self.state_sharding(mesh)
        return tuple(state if i == 0 else data if i in batch else rep for i in range(count)), rep

    def mesh_steps(self, mesh: Any, *, donate: bool = False) -> tuple[Any, Any]:
        """``(train_step, eval_step)`` compiled for the data mesh ``mesh``
        (:meth:`mesh_entry` of each).

        The same update rule as ``train_step`` (``_train_step``) through ``jax.jit`` with
        the layout of :meth:`entry_shardings`: for an image method the state (any
        pytree) replicated, ``S`` = ``replicated(mesh)``, and each batch ``(x, y)``,
        ``x: (B, H, W, C)``, ``y: (B,)``, split along ``B`` over the ``n`` devices,
        ``D`` = ``batch_sharding(mesh)``, ``B % n == 0``::

            train_step: (state: S, train: D, valid: D) -> (state: S, metrics: S)
            eval_step:  (state: S, batch: D) -> metrics: S

        XLA partitions the batch axis and inserts the all-reduces, so every mean over
        the batch (the loss, BN's ``mu = sum_b x_b / B``, ``sigma^2``) and every
        gradient is over the global batch of ``B`` rows: the 1-device step up to the
        order of floating-point sums.  Pass the state and batches as global arrays
        (``parallel.replicate``, ``parallel.shard_batch``).

        Args:
          mesh: a 1-D mesh with axis ``"data"`` (``parallel.data_mesh``).
          donate: donate the state's buffers to ``train_step`` (the state passed in is
            invalid afterwards): only for a caller that owns the state, as the loop does.
        """
        return self.mesh_entry("train_step", mesh, donate=donate), self.mesh_entry(
            "eval_step", mesh
        )

    def mesh_entry(self, name: str, mesh: Any, *, donate: bool = False) -> Any:
        """The entry point ``name`` (one of ``entry_points``) compiled for the data mesh
        ``mesh`` with the layout of :meth:`entry_shardings`, as :meth:`mesh_steps`
        compiles ``train_step``.

        Args:
          name: e.g. ``"step_with"`` (RARTS, PR-DARTS).
          mesh: a 1-D mesh with axis ``"data"``.
          donate: donate the first argument's (the state's) buffers.
        """
        if name not in self.entry_points:
            raise ValueError(f"{self.name} has no entry point {name!r}: {self.entry_points}")
        in_shardings, out_shardings = self.entry_shardings(name, mesh)
        return jax.jit(
            getattr(self, "_" + name),
            in_shardings=in_shardings,
            out_shardings=out_shardings,
            donate_argnums=(0,) if donate else (),
        )
