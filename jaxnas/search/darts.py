"""DARTS: differentiable architecture search (Liu et al., ICLR 2019).

The algorithm box (DARTS Alg. 1), one iteration of ``train_step``:

1. architecture step on a batch of the *valid* half: ``alpha <- Adam(alpha,
   grad_alpha L_val(w - xi grad_w L_train(w, alpha), alpha))`` (Eq. 6-7);
   first order takes ``xi = 0`` (Eq. 5 with w* ~ w), second order uses the
   current weight learning rate as ``xi`` and one of the hypergradients of
   ``jaxnas.bilevel.hypergrad`` (exact by default);
2. weight step on a batch of the *train* half: ``w <- SGD(w, grad_w L_train(w,
   alpha))`` with momentum 0.9, weight decay 3e-4, gradient-norm clipping 5.

Settings follow the reference code (``train_search.py``, ``architect.py``):
SGD lr 0.025 with cosine annealing *per epoch* to 0.001; Adam lr 3e-4,
betas (0.5, 0.999), weight decay 1e-3 added to the gradient (PyTorch's
coupled L2); alpha ~ 1e-3 N(0, 1); BN in training mode in both steps.  The
genotype is derived by the DARTS rule (``jaxnas.genotype.derive``).

Compile time: with ``search.fuse_phases`` the loss gradients of a step (two for
first order, three plus a Hessian-vector product for second order) come from
one compiled body scanned over phases (``DARTS._fused_phases``); the result is
the same step (a float64 test checks it to rounding).

Search spaces (``model.space``): ``"darts"``, the DARTS cell above, or ``"nb201"``,
the NAS-Bench-201 / NATS-Bench topology space (``jaxnas.spaces.nb201``: one 6-edge,
5-op cell shared by the whole network, ``model.layers`` cells per stage); there the
cell is derived by NAS-Bench-201's DARTS rule (per edge the argmax over all ops,
``none`` included) and ``search.nats_bench`` names the benchmark that reports its
accuracy at the end of the search (``benchmark_report``).

The setup, the space, the losses, ``init``, ``eval_step`` and the DARTS genotype rule
are the method contract's (``jaxnas.search.method``); this module is DARTS' own: its
config, its optimisers and the bilevel step.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax

from jaxnas.bilevel.hypergrad import hypergradient, mixed_hvp, virtual_sgd_step
from jaxnas.common import momentum_buffer
from jaxnas.search.method import (
    SearchMethodBase,
    SearchState,
    check_choices,
    step_on,
    supernet_config,
)
from jaxnas.supernet import SoftmaxMixer

__all__ = ["DARTS", "SearchState", "arch_adam", "default_config"]


def default_config() -> ml_collections.ConfigDict:
    """Method-specific config keys of DARTS with the paper's values (CIFAR-10 search)."""
    c = ml_collections.ConfigDict()
    # depthwise: "auto" picks the fastest implementation the chosen gradient allows;
    # remat: recompute each edge's intermediates in the backward pass (less memory);
    # None: on the CPU only, where it is also faster (jaxnas.supernet.resolve_remat);
    # space: "darts" (the DARTS cell) | "nb201" (NAS-Bench-201's cell: set primitives="nb201";
    # layers is then N, the cells per stage, and stem_multiplier is unused).
    c.model = supernet_config(space="darts")
    c.optim = ml_collections.ConfigDict(
        dict(
            w_lr=0.025,
            w_lr_min=0.001,
            w_momentum=0.9,
            w_nesterov=False,  # NAS-Bench-201's DARTS runs use Nesterov momentum
            w_weight_decay=3e-4,
            grad_clip=5.0,
            a_lr=3e-4,
            a_beta1=0.5,
            a_beta2=0.999,
            a_weight_decay=1e-3,
        )
    )
    # order: "first" | "second"; hypergradient (second order only):
    # "exact" (forward-over-reverse HVP), "unrolled" (jax.grad through the step),
    # "finite_difference" (the reference code's approximation, DARTS Eq. 8).
    # fuse_phases: "auto" | "yes" | "no" -- compute all loss gradients of a step with
    # one compiled body (see DARTS._fused_phases); "auto" fuses where it costs no
    # step time: exact second order.
    # nats_bench: NATS-Bench topology benchmark (model.space="nb201"): "" or its path; the
    # search then reports the benchmark's accuracy of the found cell.
    c.search = ml_collections.ConfigDict(
        dict(
            epochs=50,
            order="first",
            hypergradient="exact",
            fd_epsilon=0.01,
            fuse_phases="auto",
            nats_bench="",
        )
    )
    return c


def arch_adam(optim: ml_collections.ConfigDict) -> optax.GradientTransformation:
    """DARTS' optimiser of alpha: Adam (``optim.a_lr``, ``a_beta1``, ``a_beta2``) with
    PyTorch's coupled weight decay ``optim.a_weight_decay`` (the reference's
    ``architect.py``, CNN and RNN)."""
    return optax.chain(
        optax.add_decayed_weights(optim.a_weight_decay),
        optax.adam(optim.a_lr, b1=optim.a_beta1, b2=optim.a_beta2),
    )


def _fuse_phases(setting: str, order: str, mode: str) -> bool:
    """Resolve ``search.fuse_phases``; fusion covers first order and exact second order."""
    if setting not in ("auto", "yes", "no"):
        raise ValueError(f"search.fuse_phases must be 'auto', 'yes' or 'no', got {setting!r}")
    supported = order == "first" or mode == "exact"
    if setting == "yes" and not supported:
        raise ValueError("search.fuse_phases='yes' needs first order or hypergradient='exact'")
    if setting == "auto":  # measured: fusing first order saves 20% compile, costs 18% step
        return order == "second" and mode == "exact"
    return setting == "yes"


class DARTS(SearchMethodBase):
    """The DARTS search method (implements ``jaxnas.search.base.SearchMethod``).

    Built by the method contract (``jaxnas.search.method.SearchMethodBase``, whose
    default weight optimiser is DARTS' SGD); DARTS' own hooks: ``check_config``,
    ``setup``, ``arch_optimizer``, ``make_mixer`` (softmax of alpha); its own update
    rule is the bilevel step (``arch_gradient``, ``_train_step``) with
    ``arch_regularizer`` (extra terms of the upper-level objective), a hook of RARTS.
    RARTS and PR-DARTS add ``step_with`` to ``entry_points``, the step with traced
    hyperparameters.
    """

    name = "darts"

    # ---- what a method changes (hooks of __init__) ---------------------------------------

    def check_config(self) -> None:
        """Raise ``ValueError`` (one line) on a bad setting of this method."""
        check_choices(self.config, ("search.order", ("first", "second")))

    def setup(self) -> None:
        """What the method builds besides the supernet and the two optimisers. DARTS:
        the hypergradient's settings and, for the exact HVP, a twin supernet in plain
        autodiff (forward mode cannot pass the depthwise conv's custom_vjp)."""
        s = self.config.search
        self.order, self.mode = s.order, s.hypergradient
        self.exact_hvp = s.order == "second" and s.hypergradient == "exact"
        self.fuse_phases = _fuse_phases(s.fuse_phases, s.order, s.hypergradient)
        self.hvp_model = self.forward_mode_model() if self.exact_hvp else self.model

    def arch_optimizer(self) -> optax.GradientTransformation:
        """Adam with PyTorch's coupled weight decay (:func:`arch_adam`)."""
        return arch_adam(self.config.optim)

    def make_mixer(self):
        """DARTS mixes ops by ``softmax(alpha)`` (DARTS Eq. 1)."""
        return SoftmaxMixer()

    def arch_regularizer(self, arch: Any) -> jax.Array:
        """Extra term of the upper-level objective; none for DARTS."""
        del arch
        return jnp.zeros(())

    def arch_gradient(self, state: SearchState, train_batch, valid_batch, rng):
        """``(grad_alpha, valid_loss)``: first order, or DARTS Eq. 7 through one
        unrolled weight step with ``xi`` = the current weight learning rate."""
        o = self.config.optim

        def val_loss(model):
            def f(w, a, batch):
                loss = self.loss(w, a, state.batch_stats, batch, rng=rng, model=model)[0]
                return loss + self.arch_regularizer(a)

            return f

        if self.order == "first":  # bilevel.first_order, through the shared loss_and_grads
            (loss, _), (_, g) = self.loss_and_grads(
                state.params, state.arch, state.batch_stats, valid_batch, rng
            )
            reg, g_reg = jax.value_and_grad(self.arch_regularizer)(state.arch)
            return jax.tree.map(jnp.add, g, g_reg), loss + reg
        return hypergradient(
            val_loss(self.model),
            state.params,
            state.arch,
            momentum_buffer(state.w_opt),
            train_batch,
            valid_batch,
            xi=self.lr_schedule(state.step),
            momentum=o.w_momentum,
            weight_decay=o.w_weight_decay,
            mode=self.mode,
            fd_epsilon=self.config.search.fd_epsilon,
            hvp_loss_fn=val_loss(self.hvp_model),
        )

    def _train_step(self, state: SearchState, train_batch, valid_batch):
        rng_next, rng_a, rng_w = jax.random.split(jax.random.wrap_key_data(state.rng), 3)
        rng_a, rng_w = jax.random.key_data(rng_a), jax.random.key_data(rng_w)
        if self.fuse_phases:
            out = self._fused_phases(state, train_batch, valid_batch, rng_a, rng_w)
        else:
            out = self._separate_phases(state, train_batch, valid_batch, rng_a, rng_w)
        *trees, metrics = out  # params, arch, batch_stats, w_opt, a_opt
        return step_on(state, rng_next, *trees), dict(metrics, lr=self.lr_schedule(state.step))

    def two_step_metrics(
        self, state: SearchState, train: tuple, valid: tuple, g_w, g_arch, **extra: Any
    ) -> dict[str, jax.Array]:
        """The float32 metrics of a weight step and an architecture step on their own
        batches (GDAS, PR-DARTS): ``train`` and ``valid`` are ``(loss, accuracy)``, then
        ``extra`` (in its order), the gradient norms of ``g_w`` and ``g_arch`` and ``lr``."""
        f32 = lambda x: jnp.asarray(x, jnp.float32)
        return dict(
            loss=f32(train[0]),
            accuracy=f32(train[1]),
            valid_loss=f32(valid[0]),
            valid_accuracy=f32(valid[1]),
            **{k: f32(v) for k, v in extra.items()},
            grad_norm=f32(optax.tree.norm(g_w)),
            arch_grad_norm=f32(optax.tree.norm(g_arch)),
            lr=f32(self.lr_schedule(state.step)),
        )

    def _separate_phases(self, state, train_batch, valid_batch, rng_a, rng_w):
        # 1. architecture step on the valid half (DARTS Alg. 1, line 2)
        g_arch, valid_loss = self.arch_gradient(state, train_batch, valid_batch, rng_a)
        upd, a_opt = self.a_tx.update(g_arch, state.a_opt, state.arch)
        arch = optax.apply_updates(state.arch, upd)
        # 2. weight step on the train half with the new alpha (Alg. 1, line 3)
        (loss, (stats, acc)), (g_w, _) = self.loss_and_grads(
            state.params, arch, state.batch_stats, train_batch, rng_w
        )
        upd, w_opt = self.w_tx.update(g_w, state.w_opt, state.params)
        params = optax.apply_updates(state.params, upd)
        metrics = dict(
            loss=loss,
            accuracy=acc,
            valid_loss=valid_loss,
            grad_norm=optax.tree.norm(g_w),
            arch_grad_norm=optax.tree.norm(g_arch),
        )
        return params, arch, stats, w_opt, a_opt, metrics

    def _fused_phases(self, state, train_batch, valid_batch, rng_a, rng_w):
        """The same step with every loss gradient computed by one compiled body.

        A ``lax.scan`` over phases evaluates ``grad_{w, alpha} L(w_i, alpha_i,
        batch_i)`` once per phase; what a phase does with it is a ``lax.switch``:

        * first order: (0) valid batch at (w, alpha): Adam step on alpha;
          (1) train batch at (w, alpha_new): SGD step on w;
        * second order (exact): (0) train batch at (w, alpha): the virtual step
          w' (Eq. 6); (1) valid batch at (w', alpha): v = grad_w' L_val and
          grad_alpha L_val; (2) before its gradient, the Hessian-vector product
          of Eq. 7 and the Adam step on alpha, then the train batch at
          (w, alpha_new): SGD step on w.

        One body instead of two to four distinct programs roughly halves compile
        time; first order pays for unneeded weight gradients in phase 0.
        """
        o, second = self.config.optim, self.order == "second"
        lr = self.lr_schedule(state.step)
        batches = (train_batch, valid_batch, train_batch) if second else (valid_batch, train_batch)
        rngs = (rng_a, rng_a, rng_w) if second else (rng_a, rng_w)
        stack = lambda *xs: jax.tree.map(lambda *a: jnp.stack(a), *xs)
        zeros = lambda t: jax.tree.map(jnp.zeros_like, t)
        carry = dict(
            params=state.params,
            w1=state.params,
            arch=state.arch,
            stats=state.batch_stats,
            w_opt=state.w_opt,
            a_opt=state.a_opt,
            v=zeros(state.params),
            g_arch=zeros(state.arch),
            # metrics travel as float32 whatever the compute dtype
            valid_loss=jnp.zeros((), jnp.float32),
            loss=jnp.zeros((), jnp.float32),
            acc=jnp.zeros((), jnp.float32),
            grad_norm=jnp.zeros((), jnp.float32),
        )

        def arch_update(c):
            upd, a_opt = self.a_tx.update(c["g_arch"], c["a_opt"], c["arch"])
            return dict(c, arch=optax.apply_updates(c["arch"], upd), a_opt=a_opt)

        def hvp_then_arch_update(c, batch, rng):  # DARTS Eq. 7
            f = lambda w, a, b: self.loss(w, a, c["stats"], b, rng=rng, model=self.hvp_model)[0]
            hvp = mixed_hvp(f, c["params"], c["arch"], batch, c["v"])
            g = jax.tree.map(lambda ga, h: ga - lr * h, c["g_arch"], hvp)
            return arch_update(dict(c, g_arch=g))

        def valid_grad(c, loss, g_w, g_a):  # grad of the upper-level objective
            g_a = jax.tree.map(jnp.add, g_a, jax.grad(self.arch_regularizer)(c["arch"]))
            lv = (loss + self.arch_regularizer(c["arch"])).astype(jnp.float32)
            return dict(c, g_arch=g_a, valid_loss=lv, v=g_w)

        def weight_update(c, loss, stats, acc, g_w):
            upd, w_opt = self.w_tx.update(g_w, c["w_opt"], c["params"])
            f32 = lambda x: jnp.asarray(x, jnp.float32)
            return dict(
                c,
                params=optax.apply_updates(c["params"], upd),
                w_opt=w_opt,
                stats=stats,
                loss=f32(loss),
                acc=f32(acc),
                grad_norm=f32(optax.tree.norm(g_w)),
            )

        def body(c, inp):
            phase, batch, rng = inp
            if second:  # phase 2 starts with the hypergradient and the alpha step
                c = jax.lax.cond(
                    phase == 2, lambda c: hvp_then_arch_update(c, batch, rng), lambda c: c, c
                )
                w_in = jax.tree.map(lambda a, b: jnp.where(phase == 1, a, b), c["w1"], c["params"])
            else:
                w_in = c["params"]
            grad_fn = jax.value_and_grad(
                lambda w, a: self.loss(w, a, c["stats"], batch, rng=rng), (0, 1), has_aux=True
            )
            (loss, (stats, acc)), (g_w, g_a) = grad_fn(w_in, c["arch"])
            if second:
                branches = [
                    lambda c: dict(
                        c,
                        w1=virtual_sgd_step(
                            c["params"],
                            g_w,
                            momentum_buffer(c["w_opt"]),
                            xi=lr,
                            momentum=o.w_momentum,
                            weight_decay=o.w_weight_decay,
                        ),
                    ),
                    lambda c: valid_grad(c, loss, g_w, g_a),
                    lambda c: weight_update(c, loss, stats, acc, g_w),
                ]
            else:
                branches = [
                    lambda c: arch_update(valid_grad(c, loss, g_w, g_a)),
                    lambda c: weight_update(c, loss, stats, acc, g_w),
                ]
            return jax.lax.switch(phase, branches, c), None

        phases = jnp.arange(len(batches))
        c, _ = jax.lax.scan(body, carry, (phases, stack(*batches), jnp.stack(rngs)))
        metrics = dict(
            loss=c["loss"],
            accuracy=c["acc"],
            valid_loss=c["valid_loss"],
            grad_norm=c["grad_norm"],
            arch_grad_norm=optax.tree.norm(c["g_arch"]),
        )
        return c["params"], c["arch"], c["stats"], c["w_opt"], c["a_opt"], metrics
