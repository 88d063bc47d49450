"""Second-order DARTS hypergradients (DARTS Eqs. 6-8).

Checks: a quadratic model with an analytic answer; xi = 0 gives first order;
and, on a tiny smooth supernet in float64, the exact hypergradient against a
central finite difference of the unrolled validation loss.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnas.bilevel.hypergrad import MODES, first_order, hypergradient, unrolled_weights
from jaxnas.ops import OpsConfig
from jaxnas.supernet import SuperNet
from jaxnas.xla import jit_init

MU, WD = 0.9, 3e-4


def _quadratic(rng):
    n, k = 5, 3
    q = rng.normal(size=(n, n))
    P = jnp.asarray(q @ q.T + n * np.eye(n))
    A = jnp.asarray(rng.normal(size=(n, k)))
    b, c = jnp.asarray(rng.normal(size=n)), jnp.asarray(rng.normal(size=k))

    def loss(w, a, batch):
        t = batch  # 0: train loss, 1: valid loss
        lt = 0.5 * w["w"] @ P @ w["w"] - w["w"] @ A @ a["a"]
        lv = 0.5 * jnp.sum((w["w"] - b) ** 2) + c @ a["a"]
        return jnp.where(t == 0, lt, lv)

    return loss, P, A, b, c


@pytest.mark.parametrize("mode", MODES)
def test_quadratic_closed_form(x64, mode):
    rng = np.random.default_rng(0)
    loss, P, A, b, c = _quadratic(rng)
    w = {"w": jnp.asarray(rng.normal(size=5))}
    a = {"a": jnp.asarray(rng.normal(size=3))}
    m = {"w": jnp.asarray(rng.normal(size=5))}
    xi = 0.05
    g, _ = hypergradient(loss, w, a, m, 0, 1, xi=xi, momentum=MU, weight_decay=WD, mode=mode)
    # w' = w - xi (mu m + P w - A a + wd w); dL_val/da = c + xi A^T (w' - b)
    w1 = w["w"] - xi * (MU * m["w"] + P @ w["w"] - A @ a["a"] + WD * w["w"])
    expected = c + xi * A.T @ (w1 - b)
    np.testing.assert_allclose(g["a"], expected, rtol=1e-9)
    np.testing.assert_allclose(
        unrolled_weights(loss, w, a, m, 0, xi=xi, momentum=MU, weight_decay=WD)["w"], w1
    )


@pytest.mark.parametrize("mode", MODES)
def test_xi_zero_is_first_order(x64, mode):
    rng = np.random.default_rng(1)
    loss, *_ = _quadratic(rng)
    w, a, m = {"w": jnp.ones(5)}, {"a": jnp.ones(3)}, {"w": jnp.ones(5)}
    g, lv = hypergradient(loss, w, a, m, 0, 1, xi=0.0, momentum=MU, weight_decay=WD, mode=mode)
    g1, lv1 = first_order(loss, w, a, 1)
    np.testing.assert_allclose(g["a"], g1["a"], rtol=1e-12)
    np.testing.assert_allclose(lv, lv1)


@pytest.fixture(scope="module")
def smooth_supernet():
    """A tiny supernet with SiLU and average pooling: its unrolled loss is smooth.

    One normal and one reduction cell over three ops (identity / factorized reduce,
    average pooling, a dilated depthwise-separable convolution): every kind of mixed-op
    path the hypergradient flows through, at a fraction of the full space's compile
    time.  sep_conv_3x3 is left out: it stacks the same depthwise + pointwise + BN block
    twice (nothing dil_conv_3x3 lacks), and the float64 second-order programs compile
    every convolution's derivatives twice over (XLA's compile time is most of this
    test's time)."""
    with jax.enable_x64(True):
        rng = np.random.default_rng(0)
        x = rng.normal(size=(4, 8, 8, 1))
        y = np.array([0, 1, 2, 1])
        xt, yt = jnp.asarray(x[:2]), jnp.asarray(y[:2])
        xv, yv = jnp.asarray(x[2:]), jnp.asarray(y[2:])
        model = SuperNet(
            3,
            init_channels=2,
            layers=2,
            reductions=(1,),
            primitives=("skip_connect", "avg_pool_3x3", "dil_conv_3x3"),
            cfg=OpsConfig("shifted", smooth=True),
        )
        # one compile, not op by op, and without LLVM optimisation (it runs once)
        v = jit_init(model.init)(jax.random.key(0), xt)
        v = jax.tree.map(lambda a: a.astype(jnp.float64), v)
        # a larger alpha than DARTS' 1e-3 init so the mixing is far from uniform
        arch = jax.tree.map(lambda a: jnp.asarray(rng.normal(size=a.shape)), v["arch"])
        mom = jax.tree.map(lambda p: jnp.asarray(0.1 * rng.normal(size=p.shape)), v["params"])

        def loss(w, a, batch):
            logits, _ = model.apply(
                {"params": w, "arch": a, "batch_stats": v["batch_stats"]},
                batch[0],
                mutable=["batch_stats"],
            )
            return jnp.mean(
                jax.nn.logsumexp(logits, -1)
                - jnp.take_along_axis(logits, batch[1][:, None], 1)[:, 0]
            )

        yield dict(loss=loss, w=v["params"], a=arch, m=mom, tb=(xt, yt), vb=(xv, yv))


@pytest.mark.slow
def test_exact_hypergradient_matches_finite_difference_of_unrolled_loss(smooth_supernet):
    s = smooth_supernet
    kw = dict(xi=0.1, momentum=MU, weight_decay=WD)
    # the programs below are compiled without LLVM optimisation (jit_init's options): each
    # runs a few times on a tiny net, and their values are what is checked, not their speed
    with jax.enable_x64(True):
        grads = {
            mode: jit_init(
                lambda w, a, mode=mode: hypergradient(
                    s["loss"], w, a, s["m"], s["tb"], s["vb"], mode=mode, **kw
                )[0]
            )(s["w"], s["a"])
            for mode in ("exact", "unrolled")
        }
        fd_step = jit_init(
            lambda w, a, eps: hypergradient(
                s["loss"],
                w,
                a,
                s["m"],
                s["tb"],
                s["vb"],
                mode="finite_difference",
                fd_epsilon=eps,
                **kw,
            )[0]
        )

        @jit_init
        def unrolled_val(a):
            w1 = unrolled_weights(s["loss"], s["w"], a, s["m"], s["tb"], **kw)
            return s["loss"](w1, a, s["vb"])

        rng = np.random.default_rng(5)
        eps = 1e-5
        for _ in range(3):
            d = jax.tree.map(lambda a: jnp.asarray(rng.normal(size=a.shape)), s["a"])
            plus = jax.tree.map(lambda a, di: a + eps * di, s["a"], d)
            minus = jax.tree.map(lambda a, di: a - eps * di, s["a"], d)
            fd = (unrolled_val(plus) - unrolled_val(minus)) / (2 * eps)
            dot = lambda g, d=d: sum(jnp.vdot(g[k], d[k]) for k in g)
            np.testing.assert_allclose(dot(grads["exact"]), fd, rtol=1e-6)
            np.testing.assert_allclose(dot(grads["unrolled"]), fd, rtol=1e-6)
        # exact forward-over-reverse and reverse-over-reverse agree to rounding
        for k in grads["exact"]:
            np.testing.assert_allclose(
                grads["exact"][k], grads["unrolled"][k], rtol=1e-9, atol=1e-12
            )
        # DARTS' finite-difference Hessian-vector product (Eq. 8) is a central
        # difference with a step of norm eps in weight space: its error shrinks
        # like eps**2 towards the exact answer (0.01 is the reference's eps).
        flat = lambda g: jnp.concatenate([jnp.ravel(g[k]) for k in sorted(g)])
        exact = flat(grads["exact"])
        err = {
            eps: float(jnp.linalg.norm(flat(fd_step(s["w"], s["a"], eps)) - exact))
            / float(jnp.linalg.norm(exact))
            for eps in (1e-2, 1e-3, 1e-4)
        }
        assert err[1e-3] < err[1e-2] / 30 and err[1e-4] < err[1e-3] / 30, err
        assert err[1e-4] < 1e-4, err
