"""BayesNAS structured compression: group priors on weights, Algorithm 3, real pruning.

BayesNAS App. B (Zhou et al., ICML 2019) compresses ordinary networks with the same
sparse-Bayesian machinery as its cell search: every group ``g`` of a layer's weights
(a Table S3 type, :mod:`jaxnas.bayes_groups`) has the prior ``N(W_g | 0, gamma_g I)``,
and Algorithm 3 alternates, for ``t = 1 .. T_max``:

1. ``k`` epochs of ``min_W E_D + sum_l lambda^l sum_g omega_g ||W_g||_2``   (B.0.1)
   (``E_D`` the mean cross-entropy; plus weight decay, the Gaussian prior ``lambda``);
2. the diagonal Hessian ``H`` of ``E_D`` w.r.t. every kernel (App. C; see below);
3. per group ``gamma_g = ||W_g|| / omega_g(t-1)`` (B.0.2), ``C = (1/gamma + H')^-1``
   (B.0.3), ``alpha = -C/gamma^2 + 1/gamma`` (B.0.4), ``omega_g = sqrt(sum_g alpha)``
   (B.0.5), with ``H' = H / lambda^l`` (:func:`jaxnas.bayes_groups.group_update`);
4. prune: a group whose prior has non-positive entropy is set to zero and stays zero
   (a fixed mask) for the rest of the run.  Algorithm 3 only says "prune the
   unimportant connections"; we take Algorithm 1's entropy rule ``1/2 ln(2 pi e
   gamma) <= 0`` but measure ``gamma`` (a weight variance) in units of the layer's
   initial weight variance ``1/fan_in`` (``threshold_scale="init_variance"``):
   ``gamma_g <= sigma_l^2 / (2 pi e)``.  The absolute rule (``"none"``) suits gates
   initialised at 1; on weights of size ``1/sqrt(fan_in)`` it prunes nearly all of
   them (measured on Fashion-MNIST with pruning from ``t = 1``: 30,253 of LeNet-300-
   100's 266,610 weights survived the first update and 11 the second).
   Pruning starts at iteration ``prune_from = 2``: at ``t = 1``, ``gamma =
   ||W_g|| / omega(0)`` with ``omega(0) = 1`` is a norm, not yet a variance.

Training uses the proximal map of the group penalty (group soft-thresholding after
each SGD step, ``penalty="prox"``) so that groups reach exact zeros; at a fixed point
the rule keeps a group roughly when its saliency ``||W_g||^2 H_g`` exceeds ``lambda``
(the sparse-Bayesian-learning fixed point ``gamma* = max(0, (Q^2 - lambda S)/S^2)``).

After step 4 the masks are closed under the network's structure: a unit (neuron,
conv filter, input pixel, flattened feature) none of whose incoming or none of whose
outgoing weights survives is dead, and its incoming weights, bias (BN scale and bias)
and outgoing weights are masked too, so its output is exactly 0.  At the end the dead
units are sliced out (:func:`jaxnas.width.surgery.slice_variables` with the model's
``channel_groups()``) and the model's ``pruned(keep)`` twin is built: a physically
smaller network computing exactly what the masked one computes.  Zeros that do not
remove a unit (shape-wise groups, element groups, the residual-stream filters of
ResNet-18) stay zeros and are reported as sparsity.

Hessian estimators (``hessian.estimator``), both of the *mean* loss over
``hessian.examples`` training examples, with the model in inference mode:

* ``"ggn_exact"``: the exact diagonal of the generalised Gauss-
  Newton matrix ``sum_n J_n^T H_n J_n / N``, from ``K`` back-propagations per example
  of the columns of ``L_n`` (``L_n L_n^T = diag(p) - p p^T``, the softmax-CE output
  Hessian): :func:`ggn_diag_per_example`.  For ReLU networks with a linear last layer
  this is the Hessian without its (indefinite) second-order-activation terms, which is
  what App. C's recursions approximate (they also drop off-diagonal blocks).
* ``"ggn_mc"`` (the default, and what every shipped config uses):
  :func:`jaxnas.curvature.ggn_diag_mc` with ``hessian.samples`` Rademacher probes per
  batch, averaged over the batches.

A group's ``H`` enters only through ``alpha_i = H_i/(1 + gamma_g H_i)`` summed over
its members (B.0.5), i.e. each member keeps its own curvature.

``lam = 0`` trains the dense network (no penalty, no updates): the baseline row.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jaxnas import bayes_groups as bg
from jaxnas import curvature as cv
from jaxnas import loop, runtime, xla
from jaxnas.bayes import ENTROPY_THRESHOLD
from jaxnas.common import lr_schedule
from jaxnas.data import eval_batches
from jaxnas.models.prunable import get_leaf, set_leaf
from jaxnas.optional import MissingExtraError, require

__all__ = [
    "MODELS",
    "build_model",
    "check_config",
    "compress",
    "default_config",
    "flops",
    "ggn_diag_per_example",
    "layer_kinds",
    "unit_alive",
    "close_masks",
]

logger = logging.getLogger("jaxnas")

MODELS = ("lenet300", "lenet5", "resnet18")


def default_config() -> ml_collections.ConfigDict:
    """Keys of ``bayes-group`` (merged with :func:`jaxnas.config.shared_defaults`).

    * ``model``: ``lenet300`` | ``lenet5`` | ``resnet18``; ``widths``: ``""`` (the
      paper's) or comma-separated widths (lenet300: hidden widths; lenet5: ``c1,c2,h``;
      resnet18: the stem width) for small variants.
    * ``groups.dense`` / ``groups.conv``: comma-separated Table S3 types per layer kind
      (:mod:`jaxnas.bayes_groups`); App. B.2's choices are the defaults (LeNet-300-100:
      shape-, row- and column-wise = ``element,output,input``; convs: ``shape,filter``).
      Output-neuron types are not applied to the classifier (its 10 outputs stay).
    * ``lam``: ``lambda^l`` (one value for every layer; 0: dense baseline, no pruning);
      ``k``: epochs per Algorithm 3 iteration; ``epochs``: Algorithm 3's epochs
      (``T_max = epochs / k``); ``finetune_epochs``: then train the pruned (masked)
      network without the penalty (as Algorithm 1's step 5 retrains; Algorithm 3 is
      silent), the learning-rate schedule spanning both phases;
      ``prune_from``: first iteration whose dead groups are pruned (default 2: at
      ``t = 1``, ``gamma = ||W_g|| / omega(0)`` with ``omega(0) = 1`` is a norm, not
      yet a variance); ``threshold``: the entropy rule's ``1/(2 pi e)``;
      ``threshold_scale``: ``init_variance`` (the rule applied to ``gamma / sigma_l^2``,
      ``sigma_l^2 = 1/fan_in`` the layer's initial weight variance) or ``none`` (the
      absolute rule ``gamma <= 1/(2 pi e)``, which prunes almost every weight of a
      network whose weights are ``O(1/sqrt(fan_in))``);
      ``penalty``: ``prox`` (group soft-thresholding after each step, exact zeros;
      the overlapping types (d)/(i) always use the subgradient) or ``subgradient``
      (the penalty in the loss).
    * ``hessian``: ``estimator`` (``ggn_mc`` | ``ggn_exact``), ``examples`` (training
      examples it averages over), ``chunk`` (examples per vmapped block, exact),
      ``samples`` (probes per batch, MC).
    * ``optim``: ``name`` (``sgd`` | ``adam``), ``lr``, ``schedule`` (``cosine`` |
      ``exponential``), ``lr_min``, ``decay_rate``, ``momentum``, ``weight_decay``.
    * ``eval_batch_size``.  ``data.portion`` is not used (one training set).
    """
    c = ml_collections.ConfigDict()
    c.model = "lenet300"
    c.widths = ""
    c.groups = ml_collections.ConfigDict(dict(dense="element,output,input", conv="shape,filter"))
    c.lam = 1e-4
    c.k = 2
    c.epochs = 10
    c.finetune_epochs = 0
    c.prune_from = 2
    c.threshold = ENTROPY_THRESHOLD
    c.threshold_scale = "init_variance"
    c.penalty = "prox"
    c.hessian = ml_collections.ConfigDict(
        dict(estimator="ggn_mc", examples=1024, chunk=16, samples=16)
    )
    c.optim = ml_collections.ConfigDict(
        dict(
            name="sgd",
            lr=0.05,
            schedule="cosine",
            lr_min=0.0,
            decay_rate=0.97,
            momentum=0.9,
            weight_decay=0.0,
        )
    )
    c.eval_batch_size = 500
    return c


def check_config(config: Mapping[str, Any]) -> None:
    """ValueError with a one-line reason for a bad ``bayes-group`` setting."""
    if config["model"] not in MODELS:
        raise ValueError(f"unknown model {config['model']!r}; expected one of {', '.join(MODELS)}")
    for key, nd in (("dense", 2), ("conv", 4)):
        for word in str(config["groups"][key]).split(","):
            if word.strip():
                bg.group_kind(word.strip(), nd)
    choices = {
        "penalty": ("prox", "subgradient"),
        "threshold_scale": ("init_variance", "none"),
    }
    for key, allowed in choices.items():
        if config[key] not in allowed:
            raise ValueError(f"{key} must be one of {allowed}, got {config[key]!r}")
    if config["hessian"]["estimator"] not in ("ggn_mc", "ggn_exact"):
        raise ValueError(
            f"hessian.estimator must be 'ggn_mc' or 'ggn_exact', "
            f"got {config['hessian']['estimator']!r}"
        )
    if config["optim"]["name"] not in ("sgd", "adam"):
        raise ValueError(f"optim.name must be 'sgd' or 'adam', got {config['optim']['name']!r}")
    if float(config["lam"]) < 0:
        raise ValueError(f"lam must be >= 0, got {config['lam']}")
    for key in ("k", "epochs"):
        if int(config[key]) < 1:
            raise ValueError(f"{key} must be >= 1, got {config[key]}")
    if int(config["finetune_epochs"]) < 0:
        raise ValueError(f"finetune_epochs must be >= 0, got {config['finetune_epochs']}")
    for key in ("examples", "chunk", "samples"):
        if int(config["hessian"][key]) < 1:
            raise ValueError(f"hessian.{key} must be >= 1, got {config['hessian'][key]}")


# ---------------------------------------------------------------------------- models


def build_model(config: Mapping[str, Any], input_shape: tuple[int, ...], num_classes: int):
    """The dense network of ``config.model`` for images of ``input_shape = (H, W, C)``."""
    from jaxnas.models.lenet import LeNet5, LeNet300
    from jaxnas.models.resnet18 import ResNet18

    name = config["model"]
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; expected one of {', '.join(MODELS)}")
    try:
        widths = tuple(int(w) for w in str(config.get("widths", "")).split(",") if w.strip())
    except ValueError as e:
        raise ValueError(
            f"widths must be comma-separated integers, got {config['widths']!r}"
        ) from e
    if name == "lenet300":
        return LeNet300(
            hidden=widths or (300, 100), num_classes=num_classes, num_inputs=math.prod(input_shape)
        )
    if name == "lenet5":
        if tuple(input_shape[:2]) != (28, 28):
            raise ValueError(f"lenet5 needs 28x28 images, got {input_shape[:2]}")
        if widths and len(widths) != 3:
            raise ValueError(f"lenet5 widths are 'c1,c2,h', got {config['widths']!r}")
        c1, c2, h = widths or (20, 50, 500)
        return LeNet5(conv=(c1, c2), hidden=h, num_classes=num_classes)
    if widths and len(widths) != 1:
        raise ValueError(f"resnet18 widths is the stem width, got {config['widths']!r}")
    return ResNet18(num_classes=num_classes, width=widths[0] if widths else 64)


def _path(name: str) -> tuple[str, ...]:
    return (*name.split("/"), "kernel")


def layer_kinds(model: Any, params: Mapping[str, Any], groups: Mapping[str, str]):
    """``[(layer, kernel path, (GroupKind, ...)), ...]``: the priors of every kernel.

    Output-neuron types (dense ``output``, conv ``filter``) are left out on the
    classifier, whose outputs are the classes.
    """
    out = []
    names = model.layer_names()
    for name in names:
        nd = len(np.shape(get_leaf({"params": params}, "params", _path(name))))
        spec = groups["conv"] if nd == 4 else groups["dense"]
        kinds = []
        for word in str(spec).split(","):
            if word.strip():
                kind = bg.group_kind(word.strip(), nd)
                if name == names[-1] and kind.name in ("output", "filter"):
                    continue
                kinds.append(kind)
        if len({k.name for k in kinds}) != len(kinds):
            raise ValueError(f"group types repeat in {spec!r}")
        out.append((name, _path(name), tuple(kinds)))
    return out


# ---------------------------------------------------------------------------- curvature


def ggn_diag_per_example(apply_fn, params: Any, x: jax.Array, *, chunk: int = 16) -> Any:
    """Exact GGN diagonal of the mean softmax cross-entropy over the examples ``x``.

    ``diag(G) = (1/N) sum_n sum_k (J_n^T L_n e_k)^2`` with ``L_n = diag(sqrt p_n) -
    p_n sqrt(p_n)^T`` (so ``L_n L_n^T = diag(p_n) - p_n p_n^T``, the logit Hessian of
    CE): ``K`` back-propagations per example, ``chunk`` examples vmapped at a time,
    chunks in a ``lax.scan``.  Equals :func:`jaxnas.curvature.ggn_diag_exact` for
    models without cross-example coupling, at ``N`` times less Jacobian memory.

    Args:
      apply_fn: ``(params, x_batch) -> logits (B, K)``, examples independent.
      x: ``(N, ...)`` with ``N`` a multiple of ``chunk``.
    """
    n = x.shape[0]
    if n % chunk:
        raise ValueError(f"{n} examples are not a multiple of chunk={chunk}")

    def one(xn):
        z, vjp = jax.vjp(lambda p: apply_fn(p, xn[None])[0], params)
        p = jax.nn.softmax(z)
        sp = jnp.sqrt(p)
        cols = jnp.diag(sp) - jnp.outer(p, sp)  # L; its columns are the probes
        us = jax.vmap(lambda v: vjp(v)[0])(cols.T)
        return jax.tree.map(lambda u: jnp.sum(jnp.square(u), 0), us)

    def body(acc, xc):
        part = jax.tree.map(lambda t: jnp.sum(t, 0), jax.vmap(one)(xc))
        return jax.tree.map(jnp.add, acc, part), None

    xs = x.reshape(n // chunk, chunk, *x.shape[1:])
    total, _ = jax.lax.scan(body, jax.tree.map(jnp.zeros_like, params), xs)
    return jax.tree.map(lambda t: t / n, total)


# ---------------------------------------------------------------------------- units


def _kernel_slices(slices):
    return [s for s in slices if s.collection == "params" and s.path[-1] == "kernel"]


def unit_alive(model: Any, masks: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Per unit group: alive iff some incoming and some outgoing weight survives.

    ``masks`` mirrors ``params`` (1 kept, 0 pruned).  A group with no producer (input
    pixels, flattened features) needs only a surviving reader.  Then ``model.link``.
    """
    tree = {"params": masks}
    alive = {}
    for g in model.channel_groups():
        ok = np.ones(g.size, bool)
        for role in (g.producers, g.consumers):
            for s in _kernel_slices(role):
                m = np.asarray(get_leaf(tree, "params", s.path)) != 0
                ok &= np.moveaxis(m, s.axis, 0).reshape(g.size, -1).any(axis=1)
        alive[g.name] = ok
    return model.link(alive)


def close_masks(model: Any, masks: Mapping[str, Any]) -> tuple[Any, dict[str, np.ndarray]]:
    """Mask every weight, bias and BN scale/bias of dead units until nothing changes.

    Returns ``(masks, alive)``; every group keeps at least one unit (the one with the
    most surviving incoming weights) so that the network stays connected.
    """
    tree = {"params": jax.tree.map(np.asarray, masks)}
    groups = model.channel_groups()
    for _ in range(4 * len(groups) + 4):
        alive = unit_alive(model, tree["params"])
        for g in groups:
            if not alive[g.name].any():
                alive[g.name][0] = True
        changed = False
        for g in groups:
            dead = ~alive[g.name]
            if not dead.any():
                continue
            for s in (*g.producers, *g.consumers):
                if s.collection != "params":
                    continue
                leaf = np.array(get_leaf(tree, "params", s.path))
                moved = np.moveaxis(leaf, s.axis, 0)
                if np.any(moved[dead] != 0):
                    moved[dead] = 0
                    changed = True
                    tree = set_leaf(tree, "params", s.path, np.moveaxis(moved, 0, s.axis))
        if not changed:
            return tree["params"], alive
    raise RuntimeError("close_masks did not converge")  # pragma: no cover


# ---------------------------------------------------------------------------- sizes


def flops(model: Any, variables: Mapping[str, Any], input_shape) -> dict[str, Any]:
    """Multiply-adds per layer of one image (``jaxnas.models.summary`` conventions) and
    ``flops = 2 * macs`` (one multiply and one add), dense arithmetic."""
    from jaxnas.models.summary import layer_macs

    shapes = jax.tree.map(lambda a: jax.ShapeDtypeStruct(np.shape(a), jnp.float32), variables)
    rows = layer_macs(model, shapes, tuple(input_shape), train=False)
    per = {r.path: r.macs for r in rows}
    macs = sum(per.values())
    return {"macs": macs, "flops": 2 * macs, "per_layer_macs": per}


# ---------------------------------------------------------------------------- training


class State(flax.struct.PyTreeNode):
    params: Any
    batch_stats: Any
    opt_state: Any
    masks: Any
    bayes: Any  # {layer: {kind: {"gamma": ..., "omega": ...}}}
    step: jax.Array


def _optimizer(optim: Mapping[str, Any], epochs: int, steps: int):
    sched = lr_schedule(optim, epochs, steps)
    if optim["name"] == "sgd":
        base = optax.sgd(sched, momentum=float(optim["momentum"]) or None)
    elif optim["name"] == "adam":
        base = optax.adam(sched)
    else:
        raise ValueError(f"optim.name must be 'sgd' or 'adam', got {optim['name']!r}")
    return optax.chain(optax.add_decayed_weights(float(optim["weight_decay"])), base), sched


class Compressor:
    """The jitted pieces of Algorithm 3 for one model, config and dataset shape."""

    def __init__(self, config: Mapping[str, Any], input_shape, num_classes: int, steps: int):
        self.config = config
        self.input_shape = tuple(input_shape)
        self.model = build_model(config, self.input_shape, num_classes)
        check_config(config)
        self.lam = float(config["lam"])
        total = int(config["epochs"]) + int(config["finetune_epochs"])
        self.tx, self.sched = _optimizer(config["optim"], total, steps)
        shapes = jax.eval_shape(
            lambda: self.model.init(jax.random.key(0), jnp.zeros((1, *self.input_shape)))
        )
        self.layers = layer_kinds(self.model, shapes["params"], config["groups"])
        self.kernel_shapes = {
            name: tuple(get_leaf(shapes, "params", path).shape) for name, path, _ in self.layers
        }
        self.train_step = jax.jit(self._train_step, static_argnames="penalise")
        self.eval_step = jax.jit(self._eval_step)
        self.update = jax.jit(self._update)
        self._make_hessians()

    # -- state ----------------------------------------------------------------------------
    def init(self, seed: int) -> State:
        variables = self.model.init(jax.random.key(seed), jnp.zeros((1, *self.input_shape)))
        params = variables["params"]
        bayes = {}
        for name, path, kinds in self.layers:
            shape = np.shape(get_leaf({"params": params}, "params", path))
            bayes[name] = {
                k.name: {
                    "gamma": jnp.ones(k.group_shape(shape)),  # Alg. 3 init: gamma(0) = 1
                    "omega": jnp.ones(k.group_shape(shape)),  # omega(0) = 1
                }
                for k in kinds
            }
        return State(
            params=params,
            batch_stats=variables.get("batch_stats", {}),
            opt_state=self.tx.init(params),
            masks=jax.tree.map(jnp.ones_like, params),
            bayes=bayes,
            step=jnp.zeros((), jnp.int32),
        )

    def _kernel(self, params, path):
        return get_leaf({"params": params}, "params", path)

    def _proxed(self, kind: bg.GroupKind) -> bool:
        return self.config["penalty"] == "prox" and not kind.cross

    def penalty(self, params, bayes, *, smooth_only: bool = False) -> jax.Array:
        """``sum_l sum_types sum_g omega_g ||W_g||`` (B.0.1 without ``lambda``);
        ``smooth_only``: only the terms not handled by the proximal step."""
        total = jnp.zeros(())
        for name, path, kinds in self.layers:
            w = self._kernel(params, path)
            for k in kinds:
                if not (smooth_only and self._proxed(k)):
                    total = total + bg.group_penalty(k, w, bayes[name][k.name]["omega"])
        return total

    def prox(self, params, bayes, step_size) -> Any:
        """Group soft-thresholding ``W_g <- W_g max(0, 1 - eta lam omega_g / ||W_g||)``,
        the proximal map of ``eta lam omega_g ||W_g||`` (one type after the other)."""
        tree = {"params": params}
        for name, path, kinds in self.layers:
            w = get_leaf(tree, "params", path)
            for k in kinds:
                if self._proxed(k):
                    nrm = jnp.sqrt(bg.sq_norm(k, w))
                    thr = step_size * self.lam * bayes[name][k.name]["omega"]
                    w = w * jnp.where(nrm > thr, 1.0 - thr / jnp.where(nrm > 0, nrm, 1.0), 0.0)
            tree = set_leaf(tree, "params", path, w)
        return tree["params"]

    def thresholds(self) -> dict[str, float]:
        """Per layer, the entropy rule's threshold on ``gamma`` (see ``threshold_scale``)."""
        out = {}
        for name, shape in self.kernel_shapes.items():
            scale = 1.0 / math.prod(shape[:-1]) if self.config["threshold_scale"] != "none" else 1.0
            out[name] = float(self.config["threshold"]) * scale
        return out

    def logits(self, params, batch_stats, x, train: bool):
        variables = {"params": params}
        if batch_stats:
            variables["batch_stats"] = batch_stats
            if train:
                out, upd = self.model.apply(variables, x, train=True, mutable=["batch_stats"])
                return out, upd["batch_stats"]
        return self.model.apply(variables, x, train=False), batch_stats

    def _train_step(self, state: State, x, y, penalise: bool = True):
        penalise = penalise and self.lam > 0

        def loss_fn(params):
            z, bs = self.logits(params, state.batch_stats, x, train=True)
            ce = optax.softmax_cross_entropy_with_integer_labels(z, y).mean()
            if not penalise:
                return ce, (ce, jnp.zeros(()), bs, z)
            smooth = self.penalty(params, state.bayes, smooth_only=True)
            return ce + self.lam * smooth, (ce, self.penalty(params, state.bayes), bs, z)

        (loss, (ce, pen, bs, z)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        updates, opt_state = self.tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        if penalise:
            params = self.prox(params, state.bayes, self.sched(state.step))
        params = jax.tree.map(lambda p, m: p * m, params, state.masks)  # pruned stay 0
        acc = jnp.mean(jnp.argmax(z, -1) == y)
        new = state.replace(params=params, batch_stats=bs, opt_state=opt_state, step=state.step + 1)
        return new, {"loss": loss, "ce": ce, "penalty": pen, "acc": acc}

    def _eval_step(self, params, batch_stats, x, y, mask):
        z, _ = self.logits(params, batch_stats, x, train=False)
        return jnp.sum((jnp.argmax(z, -1) == y) * mask), jnp.sum(mask)

    # -- Hessian and the update -----------------------------------------------------------
    def hessian(self, state: State, x: np.ndarray, key: jax.Array) -> Any:
        """Diagonal curvature of the mean CE w.r.t. ``params`` (see the module doc)."""
        hc = self.config["hessian"]
        if hc["estimator"] == "ggn_exact":
            chunk = int(hc["chunk"])
            n = (x.shape[0] // chunk) * chunk
            if n == 0:
                raise ValueError(f"hessian.examples must be >= hessian.chunk={chunk}")
            return self._hess_exact(state.params, state.batch_stats, jnp.asarray(x[:n]))
        bs = int(self.config["data"]["batch_size"])
        nb = max(1, x.shape[0] // bs)
        total = None
        for b in range(nb):
            xb = jnp.asarray(x[b * bs : (b + 1) * bs])
            h = self._hess_mc(state.params, state.batch_stats, xb, jax.random.fold_in(key, b))
            total = h if total is None else jax.tree.map(jnp.add, total, h)
        return jax.tree.map(lambda t: t / nb, total)

    def _make_hessians(self) -> None:
        hc = self.config["hessian"]

        def exact(p, bs, xx):
            def apply_fn(q, xb):
                return self.logits(q, bs, xb, train=False)[0]

            return ggn_diag_per_example(apply_fn, p, xx, chunk=int(hc["chunk"]))

        def mc(p, bs, xb, key):
            sampler = cv.cross_entropy_sampler("mean")
            return cv.ggn_diag_mc(
                lambda q: self.logits(q, bs, xb, train=False)[0],
                p,
                key,
                sampler,
                num_samples=int(hc["samples"]),
            )

        self._hess_exact = jax.jit(exact)
        self._hess_mc = jax.jit(mc)

    def _update(self, params, hess, bayes):
        """Algorithm 3 step 3 for every kernel and type; returns ``(bayes, dead)``."""
        new, dead = {}, {}
        thresholds = self.thresholds()
        for name, path, kinds in self.layers:
            thr = thresholds[name]
            w = self._kernel(params, path)
            h = self._kernel(hess, path)
            d = jnp.zeros(w.shape, bool)
            new[name] = {}
            for k in kinds:
                gamma, omega = bg.group_update(k, w, h, bayes[name][k.name]["omega"], lam=self.lam)
                new[name][k.name] = {"gamma": gamma, "omega": omega}
                d = d | bg.dead_weights(k, gamma <= thr, w.shape)  # entropy <= 0
            dead[name] = d
        return new, dead

    def prune(self, state: State, dead: Mapping[str, Any]) -> State:
        """Algorithm 3 step 4: mask dead groups, then close the masks over units."""
        masks = jax.tree.map(np.asarray, state.masks)
        tree = {"params": masks}
        for name, path, _ in self.layers:
            m = np.asarray(get_leaf(tree, "params", path)) * ~np.asarray(dead[name])
            tree = set_leaf(tree, "params", path, m.astype(np.float32))
        masks, _ = close_masks(self.model, tree["params"])
        masks = jax.tree.map(jnp.asarray, masks)
        params = jax.tree.map(lambda p, m: p * m, state.params, masks)
        return state.replace(params=params, masks=masks)

    # -- reports --------------------------------------------------------------------------
    def evaluate(self, params, batch_stats, test, batch_size: int, limit: int = 0) -> float:
        correct = total = 0.0
        for x, y, m in eval_batches(test, batch_size, limit=limit):
            c, t = self.eval_step(params, batch_stats, x, y, m)
            correct, total = correct + float(c), total + float(t)
        return 1.0 - correct / max(total, 1.0)

    def physical(self, state: State):
        """``(pruned_model, pruned_variables, keep)``: the dead units sliced out."""
        from jaxnas.width.surgery import slice_variables

        _, alive = close_masks(self.model, state.masks)
        keep = {g: np.nonzero(a)[0].tolist() for g, a in alive.items()}
        variables = {"params": state.params}
        if state.batch_stats:
            variables["batch_stats"] = state.batch_stats
        variables = jax.tree.map(np.asarray, variables)
        groups = self.model.channel_groups()
        new_vars = slice_variables(variables, groups, keep)
        return self.model.pruned(keep), new_vars, keep

    def sparsity(self, state: State) -> dict[str, Any]:
        out = {}
        for name, path, kinds in self.layers:
            m = np.asarray(self._kernel(state.masks, path))
            row = {"kept": int(m.sum()), "total": int(m.size)}
            for k in kinds:
                g = np.asarray(state.bayes[name][k.name]["gamma"])
                row[f"{k.name}_groups_dead"] = int(np.sum(g <= self.thresholds()[name]))
                row[f"{k.name}_groups"] = int(g.size)
            out[name] = row
        return out


# ---------------------------------------------------------------------------- the run


def _load(config):
    from jaxnas import data

    dc = config.data
    kw = dict(data_dir=dc.data_dir or None)
    try:
        train = data.load(dc.dataset, "train", limit=dc.limit or None, **kw)
        test = data.load(dc.dataset, "test", limit=config.run.eval_limit or None, **kw)
    except ValueError as e:  # an unknown dataset name: one line, no traceback
        raise runtime.RunError(f"data.dataset: {e}") from e
    return train, test


class BayesCompressExperiment(loop.Experiment):
    """Algorithm 3 (:func:`compress`) as an experiment of the one loop: ``epochs``
    penalised epochs, a Hessian / gamma update and pruning every ``k`` of them, then
    ``finetune_epochs`` plain ones; each epoch's record has ``phase``, ``test_error``,
    the surviving ``units`` per group and ``weights_kept``."""

    name = "bayes-group compression"
    outputs = ("units.png",)

    def __init__(self, config: ml_collections.ConfigDict):
        self.config = config
        self.epochs = int(config.epochs) + int(config.finetune_epochs)

    def setup(self, wd: loop.Workdir, latest_step: int | None) -> None:
        from jaxnas.data import Augment, Loader

        config = self.config
        try:
            check_config(config)
        except ValueError as e:
            raise runtime.RunError(f"bad bayes-group config: {e}") from e
        train, self.test = _load(config)
        dc = config.data
        augment = Augment(crop_padding=dc.crop_padding, flip=dc.flip, cutout=dc.cutout)
        self.loader = Loader(
            train, None, int(dc.batch_size), seed=int(config.seed), augment=augment
        )
        try:
            self.comp = Compressor(
                config, train.images.shape[1:], train.num_classes, len(self.loader)
            )
        except ValueError as e:  # e.g. lenet5 on images that are not 28x28
            raise runtime.RunError(str(e)) from e
        self.hx = _hessian_examples(train, config)
        logger.info(
            "bayes-group %s: %s, lam=%g",
            config.model,
            self.comp.model.architecture(),
            self.comp.lam,
        )

    def steps_in(self, epoch: int) -> int:
        return len(self.loader)

    def init(self) -> State:
        return self.comp.init(int(self.config.seed))

    def batches(self, epoch: int):
        penalise = epoch < int(self.config.epochs)
        for x, y in self.loader.epoch(epoch):
            yield x, y, penalise

    def step(self, state: State, batch: Any):
        x, y, penalise = batch
        return self.comp.train_step(state, x, y, penalise=penalise)

    def name_metrics(self, means):
        return dict(means)  # ce, acc, penalty, ... as the step computes them

    def end_epoch(self, wd: loop.Workdir, state: State, epoch: int):
        config, comp = self.config, self.comp
        penalise = epoch <= int(config.epochs)
        record: dict[str, Any] = {"phase": "prune" if penalise else "finetune"}
        t = epoch // int(config.k)
        if penalise and comp.lam > 0 and epoch % int(config.k) == 0:
            hess = comp.hessian(state, self.hx, jax.random.fold_in(jax.random.key(config.seed), t))
            bayes, dead = comp.update(state.params, hess, state.bayes)
            state = state.replace(bayes=bayes)
            if t >= int(config.prune_from):
                state = comp.prune(state, dead)
            record["iteration"] = t
        record["test_error"] = comp.evaluate(
            state.params, state.batch_stats, self.test, int(config.eval_batch_size)
        )
        _, alive = close_masks(comp.model, state.masks)
        record["units"] = {g: int(a.sum()) for g, a in alive.items()}
        record["weights_kept"] = int(sum(np.sum(m) for m in jax.tree.leaves(state.masks)))
        logger.info(
            "epoch %d/%d test error %.4f units %s",
            epoch,
            self.epochs,
            record["test_error"],
            record["units"],
        )
        return state, record

    def finish(self, wd: loop.Workdir, state: State, records: list[dict]) -> dict[str, Any]:
        summary = _summarise(self.comp, state, self.test, self.config)
        summary["time_s"] = round(sum(r.get("time", 0.0) for r in records), 2)  # all sessions
        if self.primary:
            _plot_units(summary, wd.path("units.png"))
        return summary


def compress(
    config: ml_collections.ConfigDict,
    workdir: str,
    *,
    resume: bool = False,
    progress: bool = False,
) -> dict[str, Any]:
    """Algorithm 3 on ``config.model`` and ``config.data``; writes ``workdir`` and returns
    the summary (also ``workdir/summary.json``).

    ``workdir``: the one loop's files (:mod:`jaxnas.loop`: ``config.json``,
    ``metrics.jsonl`` with one record per epoch, ``log.txt``, ``checkpoints/{step}``
    every epoch, ``resume=True`` continuing from the last), ``summary.json`` (pruned
    architecture, errors, FLOPs, per-layer kept units and sparsity, ``time_s`` over
    every session of the run) and ``units.png`` (surviving units per layer).
    """
    xla.prepare()
    return loop.run(
        BayesCompressExperiment(config), config, workdir, resume=resume, progress=progress
    )


def _hessian_examples(train, config) -> np.ndarray:
    from jaxnas.data import normalize

    n = min(int(config.hessian.examples), len(train))
    idx = np.random.default_rng([int(config.seed), 7]).permutation(len(train))[:n]
    return normalize(train.images[np.sort(idx)], train.name)


def _summarise(comp: Compressor, state: State, test, config) -> dict[str, Any]:
    ebs = int(config.eval_batch_size)
    model = comp.model
    dense_vars = {"params": state.params}
    if state.batch_stats:
        dense_vars["batch_stats"] = state.batch_stats
    err_masked = comp.evaluate(state.params, state.batch_stats, test, ebs)
    small, small_vars, keep = comp.physical(state)
    small_comp = _twin(comp, small)
    err_pruned = small_comp.evaluate(
        small_vars["params"], small_vars.get("batch_stats", {}), test, ebs
    )
    before = flops(model, dense_vars, comp.input_shape)
    after = flops(small, small_vars, comp.input_shape)
    n_params = sum(int(np.size(p)) for p in jax.tree.leaves(state.params))
    n_small = sum(int(np.size(p)) for p in jax.tree.leaves(small_vars["params"]))
    n_nonzero = sum(
        int(np.count_nonzero(np.asarray(p))) for p in jax.tree.leaves(small_vars["params"])
    )
    return {
        "method": "bayes-group",
        "model": config.model,
        "dataset": config.data.dataset,
        "lam": comp.lam,
        "architecture": f"{model.architecture()} -> {small.architecture()}",
        "architecture_before": model.architecture(),
        "architecture_after": small.architecture(),
        "units": {g.name: [len(keep[g.name]), g.size] for g in model.channel_groups()},
        "error_before": err_masked,
        "error_after": err_pruned,
        "macs_before": before["macs"],
        "macs_after": after["macs"],
        "flops_before": before["flops"],
        "flops_after": after["flops"],
        "per_layer_macs_before": before["per_layer_macs"],
        "per_layer_macs_after": after["per_layer_macs"],
        "params_before": n_params,
        "params_after": n_small,
        "params_nonzero_after": n_nonzero,
        "compression": n_params / max(n_nonzero, 1),
        "sparsity": comp.sparsity(state),
        "epochs": int(config.epochs),
        "finetune_epochs": int(config.finetune_epochs),
        "k": int(config.k),
    }


def _twin(comp: Compressor, model) -> Compressor:
    twin = object.__new__(Compressor)
    twin.__dict__.update(comp.__dict__)
    twin.model = model
    twin.eval_step = jax.jit(twin._eval_step)
    return twin


def _plot_units(summary: Mapping[str, Any], path: str) -> None:
    try:
        require("matplotlib", "plotting").use("Agg")
        plt = require("matplotlib.pyplot", "plotting")
    except MissingExtraError:  # pragma: no cover - optional: no units.png
        return
    names = list(summary["units"])
    kept = [summary["units"][n][0] for n in names]
    total = [summary["units"][n][1] for n in names]
    fig, ax = plt.subplots(figsize=(1.2 * len(names) + 2, 3))
    ax.bar(names, [1.0] * len(names), color="lightgray", label="dense")
    ax.bar(names, [k / t for k, t in zip(kept, total)], color="tab:blue", label="kept")
    for i, (k, t) in enumerate(zip(kept, total)):
        ax.text(i, 1.02, f"{k}/{t}", ha="center", fontsize=8)
    ax.set_ylim(0, 1.15)
    ax.set_ylabel("fraction of units kept")
    ax.set_title(f"{summary['model']} lam={summary['lam']:g}: {summary['architecture']}")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
