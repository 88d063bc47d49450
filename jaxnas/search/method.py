"""The method contract: the one setup every search method is built from.

A search method is one module with a config section (``default_config``) and a
subclass of :class:`SearchMethodBase` that overrides hooks, never the
constructor.  ``SearchMethodBase.__init__`` stores the data's classes and input shape
and runs the one setup of :class:`jaxnas.search.core.MethodCore` (``set_up``, the part
of the contract that no space owns), whose hooks this class fills for the image
supernets, in this order:

1. ``steps_per_epoch >= 1``, then the space (:meth:`~SearchMethodBase.setup_space`,
   ``model.space``: ``self.space``, its object ``self.search_space``
   (:mod:`jaxnas.search_spaces`), ``self.primitives``, ``self.edge_labels``;
   ``search.nats_bench`` checked) and, for methods with one architecture per cell
   (``arch_sharing = "cell"``), ``self.reductions`` from ``model.reductions``;
2. :meth:`~SearchMethodBase.check_config`: one-line ``ValueError`` on a bad setting,
   before anything is built;
3. :meth:`~SearchMethodBase.build_network`: the supernet of the space
   (:meth:`~SearchMethodBase._build_model`, the space object's ``supernet``) whose
   edges mix their ops by :meth:`~SearchMethodBase.make_mixer`, the ``jax.jit`` of its
   ``init``, and ``self.lr_schedule`` (:meth:`~SearchMethodBase.weight_schedule`,
   default DARTS' cosine per epoch from ``optim.w_lr`` to ``optim.w_lr_min``);
4. :meth:`~SearchMethodBase.setup`: what the method adds (second networks, tables,
   its own settings);
5. ``self.w_tx`` = :meth:`~SearchMethodBase.weight_optimizer` (default DARTS' SGD on
   ``optim.w_*``), ``self.a_tx`` = :meth:`~SearchMethodBase.arch_optimizer`;
6. ``jax.jit`` of every name in ``entry_points`` (``name`` is ``jax.jit(self._name)``;
   ``train_step`` and ``eval_step`` by default).

Data parallelism is the contract's too, never a method's:
:meth:`~jaxnas.search.core.MethodCore.mesh_steps` compiles the same ``_train_step`` and
``_eval_step`` for a 1-D ``"data"`` mesh (:mod:`jaxnas.parallel`), the state replicated
and the batches split along their first axis, so that BN statistics, gradients,
hypergradients and Hessian-vector products are those of the global batch, as on one
device; :meth:`~jaxnas.search.core.MethodCore.mesh_entry` does the same for any entry
point (RARTS' and PR-DARTS' ``step_with``), its batch arguments named in
``batch_arguments``.

The update rule is ``_train_step(state, train_batch, valid_batch) -> (state,
metrics)``; the state is :class:`SearchState` or a method's own pytree made by
:meth:`~SearchMethodBase.make_state`.  Shared here: the losses (:meth:`apply`,
:meth:`loss`), :meth:`init`, the inference-mode ``eval_step`` (through
:meth:`eval_arch`), and the DARTS reading of the architecture (:meth:`arch_weights`,
:meth:`genotype`), which a method overrides where its own rule differs.  Module-level
helpers: :func:`supernet_config` (the ``model`` section every supernet search starts
from), :func:`check_choices` (option values), :func:`step_on` (the state one step on).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jaxnas import search_spaces
from jaxnas.common import cross_entropy, epoch_cosine_schedule, torch_sgd
from jaxnas.ops import OpsConfig
from jaxnas.search.core import MethodCore, next_state
from jaxnas.spaces.darts import CellTopology
from jaxnas.supernet import resolve_reductions
from jaxnas.xla import jit_init

__all__ = [
    "SearchMethodBase",
    "SearchState",
    "as_key",
    "check_choices",
    "step_on",
    "supernet_config",
]


class SearchState(flax.struct.PyTreeNode):
    """Everything a search carries from step to step (a pytree of arrays)."""

    step: jax.Array  # int32 scalar: iterations done
    params: Any  # supernet weights w
    arch: Any  # architecture variables, {"normal": (14, n_ops), "reduce": ...}
    batch_stats: Any  # BN running statistics
    w_opt: optax.OptState
    a_opt: optax.OptState
    rng: jax.Array  # raw uint32 key, for stochastic mixers


def as_key(rng: jax.Array) -> jax.Array:
    """A typed PRNG key from a typed key or raw ``uint32`` key data (``(2,)``)."""
    if jnp.issubdtype(jnp.asarray(rng).dtype, jax.dtypes.prng_key):
        return rng
    return jax.random.wrap_key_data(jnp.asarray(rng, jnp.uint32))


def step_on(state: Any, rng: jax.Array, params, arch, batch_stats, w_opt, a_opt) -> Any:
    """``state`` one step on: ``step + 1``, the new trees (in :class:`SearchState`'s field
    order) and the next key ``rng`` (typed, stored as key data); other fields kept."""
    trees = dict(params=params, arch=arch, batch_stats=batch_stats, w_opt=w_opt, a_opt=a_opt)
    return next_state(state, rng, **trees)


def supernet_config(**changes: Any) -> ml_collections.ConfigDict:
    """The ``model`` section of a supernet search: DARTS' CIFAR-10 search network
    (C = 16, 8 cells, stem 3C, the DARTS ops), the depthwise conv picked for the step
    (``"auto"``) and rematerialisation by backend (``remat=None``:
    :func:`jaxnas.supernet.resolve_remat`),
    with ``changes`` (keys to change or add)."""
    c = ml_collections.ConfigDict(
        dict(
            init_channels=16,
            layers=8,
            stem_multiplier=3,
            primitives="darts",
            depthwise="auto",
            remat=None,
        )
    )
    c.update(changes)
    return c


def check_choices(config: ml_collections.ConfigDict, *choices: tuple[str, Sequence[Any]]) -> None:
    """Raise ``ValueError`` (one line) unless each ``(dotted key, allowed values)`` of
    ``choices`` has one of its allowed values in ``config``."""
    for key, allowed in choices:
        value = config
        for part in key.split("."):
            value = value[part]
        if value not in allowed:
            raise ValueError(f"{key} must be one of {tuple(allowed)}, got {value!r}")


class SearchMethodBase(MethodCore):
    """The setup and the shared parts of an image search method (implements
    ``jaxnas.search.base.SearchMethod``); see the module docstring for the contract.

    Hooks: ``check_config``, ``make_mixer``, ``weight_schedule``, ``setup``,
    ``weight_optimizer``, ``arch_optimizer``, ``make_state``, ``_train_step``,
    ``eval_arch``, ``arch_weights``, ``genotype``; class attributes ``name``,
    ``spaces``, ``arch_sharing``, ``entry_points``.  ``setup_space`` and
    ``build_network`` (hooks of :class:`~jaxnas.search.core.MethodCore`) are this
    class's: the space and the supernet of every image method.
    """

    #: the values of ``model.space`` this method can search; a method whose derivation
    #: or regularizers assume the DARTS cell narrows it to ``("darts",)``.
    spaces: tuple[str, ...] = ("darts", "nb201")
    space: str = "darts"  # set by setup_space, with its object self.search_space

    #: ``"cell_type"``: one architecture per cell type (``{"normal", "reduce"}``);
    #: ``"cell"``: one per cell (``{"layer_00", ...}``), reduction cells at
    #: ``model.reductions`` (``()``: DARTS' ``layers // 3, 2 layers // 3``).
    arch_sharing: str = "cell_type"

    #: BN statistics of ``eval_step``: ``"running"`` averages or the ``"batch"``'s own
    eval_bn: str = "running"

    #: the prefix of the weight optimiser's ``optim`` keys (``w_lr``, ``w_lr_min``,
    #: ``w_momentum``, ``w_weight_decay``, ``w_nesterov``) that :meth:`weight_schedule`
    #: and :meth:`weight_optimizer` read; ``""`` where the weights' are the only ones.
    weight_keys: str = "w_"

    def __init__(
        self,
        config: ml_collections.ConfigDict,
        *,
        steps_per_epoch: int,
        num_classes: int,
        input_shape: tuple[int, int, int],
    ):
        """The one setup (module docstring) for images of ``input_shape`` ``(H, W, C)``
        in ``num_classes`` classes; a method overrides hooks, never this."""
        self.num_classes = int(num_classes)
        self.input_shape = tuple(int(v) for v in input_shape)
        self.set_up(config, steps_per_epoch)

    def build_network(self) -> None:
        """The supernet (:meth:`_build_model`; the depthwise conv ``"auto"`` is the
        ``custom_vjp`` one), the ``jax.jit`` of its ``init`` (:func:`jaxnas.xla.jit_init`)
        and ``self.lr_schedule`` (:meth:`weight_schedule`)."""
        depthwise = self.config.model.depthwise
        depthwise = "custom_vjp" if depthwise == "auto" else depthwise
        self.model = self._build_model(self.num_classes, OpsConfig(depthwise=depthwise))
        self._init = jit_init(functools.partial(self.model.init, train=True))
        self.lr_schedule = self.weight_schedule()

    # ---- what a method changes (hooks of the setup) ----------------------------------

    def make_mixer(self):
        """The ``jaxnas.supernet.Mixer`` of every edge (how an edge mixes its ops)."""
        raise NotImplementedError

    def weight_schedule(self) -> optax.Schedule:
        """The weights' learning rate: cosine per epoch from ``optim.w_lr`` to
        ``optim.w_lr_min`` (``jaxnas.common.epoch_cosine_schedule``; ``w_``:
        :attr:`weight_keys`)."""
        o, s, w = self.config.optim, self.config.search, self.weight_keys
        return epoch_cosine_schedule(o[f"{w}lr"], o[f"{w}lr_min"], s.epochs, self.steps_per_epoch)

    def weight_optimizer(self) -> optax.GradientTransformation:
        """The optimiser of the supernet's weights (``"params"``): by default the DARTS
        reference's (``train_search.py``), SGD with momentum ``optim.w_momentum`` on
        ``lr_schedule``, weight decay ``optim.w_weight_decay`` added to the gradient and
        the gradient norm clipped to ``optim.grad_clip`` first
        (``jaxnas.common.torch_sgd``; Nesterov where the config has ``optim.w_nesterov``;
        ``w_``: :attr:`weight_keys`)."""
        o, w = self.config.optim, self.weight_keys
        return torch_sgd(
            self.lr_schedule,
            momentum=o[f"{w}momentum"],
            weight_decay=o[f"{w}weight_decay"],
            grad_clip=o.grad_clip,
            nesterov=bool(o.get(f"{w}nesterov", False)),
        )

    def make_state(self, sample_images: np.ndarray, **fields: Any) -> Any:
        """The initial state from the shared ``fields`` (:class:`SearchState`'s); a method
        with more state returns its own pytree."""
        del sample_images
        return SearchState(**fields)

    # ---- the search space (model.space) ------------------------------------------

    def setup_space(self) -> None:
        """``self.space`` (the name) and ``self.search_space`` (the object,
        :func:`jaxnas.search_spaces.get`) from ``model.space``; ``self.primitives`` from
        ``model.primitives`` and ``self.edge_labels`` (the plots' edge names) by the space;
        checks ``search.nats_bench`` (the package and the path) before any search runs;
        ``self.reductions`` for ``arch_sharing="cell"``."""
        m, s = self.config.model, self.config.search
        self.space = m.get("space", "darts")
        if self.space not in self.spaces:
            raise ValueError(
                f"model.space must be one of {self.spaces} for {self.name}, got {self.space!r}"
            )
        self.search_space = search_spaces.get(self.space)
        self.primitives = self.search_space.resolve_primitives(m.primitives)
        self.edge_labels = self.search_space.edge_labels
        if s.get("nats_bench", ""):
            if not self.search_space.has_benchmark:  # NATS-Bench: NAS-Bench-201's cells
                raise ValueError("search.nats_bench needs model.space='nb201'")
            self.search_space.check_benchmark(s.nats_bench)
        if self.arch_sharing == "cell":
            self.reductions = resolve_reductions(m.layers, tuple(m.reductions) or None)

    def _build_model(self, num_classes: int, cfg: OpsConfig):
        """The supernet of ``model.space`` with ``make_mixer()``'s edges (the space
        object's ``supernet``: DARTS' ``SuperNet`` or NAS-Bench-201's ``NB201SuperNet``,
        ``model.layers`` cells per stage)."""
        return self.search_space.supernet(
            self.make_mixer(),
            num_classes=num_classes,
            model=self.config.model,
            primitives=self.primitives,
            cfg=cfg,
            reductions=self.reductions if self.arch_sharing == "cell" else None,
        )

    def forward_mode_model(self):
        """The supernet for forward-mode autodiff (Hessian-vector products, ``jax.hessian``):
        the same network with the shifted-multiply-add depthwise conv where the step uses
        its ``custom_vjp`` version, which forward mode cannot pass."""
        if self.model.cfg.depthwise == "custom_vjp":
            return self.model.clone(cfg=OpsConfig(depthwise="shifted"))
        return self.model

    @property
    def topology(self) -> CellTopology:
        """The supernet's cell topology."""
        return self.model.topology

    def benchmark_report(self, genotype: Any) -> dict[str, Any] | None:
        """The space's benchmark record of ``genotype`` (NATS-Bench's of an NB201 cell,
        ``search_space.lookup``) when ``search.nats_bench`` names the benchmark; None
        otherwise.  The runner calls it at the end of a search."""
        path = self.config.search.get("nats_bench", "")
        if not path:
            return None
        return self.search_space.lookup(genotype, path)

    # ---- losses -----------------------------------------------------------------

    def apply(self, model, params, arch, batch_stats, images, *, train, rng=None, step_input=None):
        """Logits and updated BN statistics of ``model``; ``rng`` (raw key data) feeds
        stochastic mixers (the ``"mixer"`` stream), ``step_input`` (a pytree of traced
        per-step values, e.g. GDAS' ``{"tau": tau}``) the mixer's ``edge_weights``
        (``jaxnas.supernet.Mixer``)."""
        variables = {"params": params, "arch": arch, "batch_stats": batch_stats}
        rngs = {} if rng is None else {"mixer": jax.random.wrap_key_data(rng)}
        kw = {} if step_input is None else {"step_input": step_input}
        if train:
            logits, upd = model.apply(
                variables, images, train=True, mutable=["batch_stats"], rngs=rngs, **kw
            )
            return logits, upd["batch_stats"]
        return model.apply(variables, images, train=False, rngs=rngs, **kw), batch_stats

    def loss(self, params, arch, batch_stats, batch, *, rng=None, model=None, step_input=None):
        """Training-mode cross entropy; aux: (new BN statistics, accuracy)."""
        logits, stats = self.apply(
            model or self.model,
            params,
            arch,
            batch_stats,
            batch[0],
            train=True,
            rng=rng,
            step_input=step_input,
        )
        loss, acc = cross_entropy(logits, batch[1])
        return loss, (stats, acc)

    @functools.cached_property
    def loss_and_grads(self):
        """``jax.jit`` of ``(params, arch, batch_stats, batch, rng, step_input=None) ->
        ((loss, (stats, acc)), (grad_params, grad_arch))``: :meth:`loss` of ``self.model``
        and its gradient with respect to both the weights and the architecture.

        The phases of a step that differentiate the training loss at the same shapes
        (DARTS' architecture step on the valid batch and its weight step on the train
        batch) call this one function, so the supernet and its autodiff are traced
        once per step instead of once per phase; inside the step's own ``jit`` XLA
        inlines both calls and drops the gradient a phase does not use (the step's
        run time is unchanged, its trace about halves).
        """

        def value_and_grads(params, arch, batch_stats, batch, rng, step_input=None):
            def loss(w, a):
                return self.loss(w, a, batch_stats, batch, rng=rng, step_input=step_input)

            return jax.value_and_grad(loss, (0, 1), has_aux=True)(params, arch)

        return jax.jit(value_and_grads)

    # ---- state ------------------------------------------------------------------

    def init_variables(self, key: jax.Array, sample_images: np.ndarray) -> dict[str, Any]:
        """The supernet's variables from ``key`` (``sample_images`` gives the input shape)."""
        x = jnp.zeros((2, *sample_images.shape[1:]), jnp.float32)
        return self._init({"params": key, "mixer": key}, x)

    def init(self, rng: jax.Array, sample_images: np.ndarray) -> Any:
        """Initial state (:meth:`make_state`); ``sample_images`` gives the input shape."""
        rng_init, rng_state = jax.random.split(as_key(rng))
        variables = self.init_variables(rng_init, sample_images)
        params, arch = variables["params"], variables["arch"]
        return self.make_state(
            sample_images,
            step=jnp.zeros((), jnp.int32),
            params=params,
            arch=arch,
            batch_stats=variables["batch_stats"],
            w_opt=self.w_tx.init(params),
            a_opt=self.a_tx.init(arch),
            rng=jax.random.key_data(rng_state),
        )

    # ---- evaluation -------------------------------------------------------------

    def eval_arch(self, state: Any) -> Any:
        """What the supernet reads in place of ``arch`` in ``eval_step`` (DARTS:
        alpha itself; PR-DARTS: deterministic gates; BayesNAS: the unpruned gates)."""
        return state.arch

    def _eval_step(self, state: Any, batch):
        """``{"loss", "accuracy"}`` of the supernet on ``batch``; BN by ``eval_bn`` (the
        state is not updated either way)."""
        logits, _ = self.apply(
            self.model,
            state.params,
            self.eval_arch(state),
            state.batch_stats,
            batch[0],
            train=self.eval_bn == "batch",
            rng=state.rng,
        )
        loss, acc = cross_entropy(logits, batch[1])
        return dict(loss=loss, accuracy=acc)

    # ---- reading the architecture -------------------------------------------------

    def arch_weights(self, state: Any) -> dict[str, np.ndarray]:
        """The mixer's edge weights per ``"arch"`` entry (DARTS: ``softmax(alpha)``,
        ``{"normal": (14, n_ops), "reduce": ...}``; NB201 space: ``{"cell": (6, n_ops)}``)."""
        mixer = self.model.mixer
        return {k: np.asarray(mixer.edge_weights(v, None)) for k, v in state.arch.items()}

    def genotype(self, state: Any) -> Any:
        """The space's rule (``search_space.derive``) on :meth:`arch_weights`: DARTS' per
        node the 2 strongest edges, per edge its strongest non-zero op; on the NB201
        space NAS-Bench-201's, every edge its strongest op, ``none`` included."""
        return self.search_space.derive(self.arch_weights(state), self.primitives)
