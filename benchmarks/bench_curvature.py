"""Benchmark the diagonal-curvature estimators of ``jaxnas.curvature`` on a small CNN.

Compares, for one mini-batch, the cost of each estimator of the diagonal
Hessian / Gauss-Newton w.r.t. all weights against one gradient evaluation
(``jax.value_and_grad`` of the loss): compile time, steady-state time, peak
memory (max RSS, each estimator in its own subprocess), and the relative
error of its estimate against the exact GGN diagonal.  Writes JSON; not a test.

    python benchmarks/bench_curvature.py --out benchmarks/results/curvature.json
    python benchmarks/bench_curvature.py --batch 8 --width 4 --repeats 2

CNN: conv3x3(C) - ReLU - conv3x3(2C, stride 2) - ReLU - global average pool -
dense(10), softmax cross-entropy (mean), NHWC input ``size x size x 3``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time

ESTIMATORS = (
    "grad",  # baseline: value_and_grad of the loss
    "ggn_mc_1",  # ggn_diag_mc, 1 probe (one backward pass)
    "ggn_mc_k",  # ggn_diag_mc, --samples probes
    "ggn_mc_label_k",  # ggn_diag_mc with sampled labels, --samples probes
    "hutchinson_k",  # hutchinson_diag, --samples probes (Hessian, not GGN)
    "paper_recursion",  # BayesNAS App. C layer-wise recursion (C.1.4-5, C.2.1-2)
    "ggn_exact",  # per-example Jacobians (N*K backward passes)
    "hessian_diag",  # jax.hessian (refused above max_params)
)


def _setup(a):
    import jax
    import jax.numpy as jnp
    import numpy as np

    from jaxnas import curvature as cv

    rng = np.random.default_rng(0)
    c, k = a.width, 10
    params = {
        "k1": rng.normal(0, (2 / 27) ** 0.5, (3, 3, 3, c)),
        "b1": np.zeros(c),
        "k2": rng.normal(0, (2 / (9 * c)) ** 0.5, (3, 3, c, 2 * c)),
        "b2": np.zeros(2 * c),
        "wd": rng.normal(0, (1 / (2 * c)) ** 0.5, (2 * c, k)),
        "bd": np.zeros(k),
    }
    params = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), params)
    x = jnp.asarray(rng.normal(size=(a.batch, a.size, a.size, 3)), jnp.float32)
    y = jnp.asarray(rng.integers(0, k, a.batch))
    dn = ("NHWC", "HWIO", "NHWC")

    def conv(inp, kern, stride):
        return jax.lax.conv_general_dilated(inp, kern, stride, "SAME", dimension_numbers=dn)

    def forward(p, x):
        u1 = conv(x, p["k1"], (1, 1)) + p["b1"]
        a1 = jax.nn.relu(u1)
        u2 = conv(a1, p["k2"], (2, 2)) + p["b2"]
        a2 = jax.nn.relu(u2)
        pooled = a2.mean((1, 2))
        return pooled @ p["wd"] + p["bd"], (u1, a1, u2, a2, pooled)

    def loss_from_logits(z):
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(z), y[:, None], axis=1))

    model = lambda p: forward(p, x)[0]
    loss = lambda p: loss_from_logits(model(p))

    def paper_recursion(p):
        """App. C on this CNN: seed p(1-p)/N at the logits, (C.1.4)-(C.1.5) for
        the dense layer, average pooling as a linear map (diagonal kept),
        ReLU masks, (C.2.1)/(C.2.2) for the convs; biases = sum of H over rows."""
        z, (u1, a1, u2, a2, pooled) = forward(p, x)
        h3 = cv.softmax_cross_entropy_hessian_diag(z, reduction="mean")
        out = {"wd": cv.dense_weight_hessian(pooled, h3), "bd": h3.sum(0)}
        hp = cv.dense_pre_hessian(h3, p["wd"])  # at the pooled features
        hw = a2.shape[1] * a2.shape[2]
        h2 = (u2 > 0) * jnp.broadcast_to(hp[:, None, None, :] / hw**2, a2.shape)
        out["k2"] = cv.conv_weight_hessian(a1, h2, (3, 3), strides=(2, 2))
        out["b2"] = h2.sum((0, 1, 2))
        h1 = cv.conv_pre_hessian(
            h2, p["k2"], a1.shape, strides=(2, 2), act_deriv=(u1 > 0).astype(u1.dtype)
        )
        out["k1"] = cv.conv_weight_hessian(x, h1, (3, 3))
        out["b1"] = h1.sum((0, 1, 2))
        return out

    key = jax.random.key(1)
    ce = cv.cross_entropy_sampler("mean")
    ce_label = cv.cross_entropy_sampler("mean", noise="label")
    fns = {
        "grad": lambda p: jax.value_and_grad(loss)(p)[1],
        "ggn_mc_1": lambda p: cv.ggn_diag_mc(model, p, key, ce),
        "ggn_mc_k": lambda p: cv.ggn_diag_mc(model, p, key, ce, num_samples=a.samples),
        "ggn_mc_label_k": lambda p: cv.ggn_diag_mc(model, p, key, ce_label, num_samples=a.samples),
        "hutchinson_k": lambda p: cv.hutchinson_diag(
            lambda q: loss(q), p, key, num_samples=a.samples
        ),
        "paper_recursion": paper_recursion,
        "ggn_exact": lambda p: cv.ggn_diag_exact(model, p, loss_from_logits),
        "hessian_diag": lambda p: cv.hessian_diag(loss, p, max_params=a.max_params),
    }
    return params, fns


def measure(a, name: str, save: str) -> dict:
    """Child process: compile and time one estimator, save its estimate."""
    import jax
    import numpy as np
    from jax.flatten_util import ravel_pytree

    from jaxnas import curvature as cv

    params, fns = _setup(a)
    fn = jax.jit(fns[name])
    t = time.perf_counter()
    compiled = fn.lower(params).compile()
    compile_s = time.perf_counter() - t
    out = jax.block_until_ready(compiled(params))
    times = []
    for _ in range(a.repeats):
        t = time.perf_counter()
        out = jax.block_until_ready(compiled(params))
        times.append(time.perf_counter() - t)
    np.save(save, np.asarray(ravel_pytree(out)[0], np.float64))
    return dict(
        estimator=name,
        compile_s=round(compile_s, 3),
        time_s=round(float(np.median(times)), 5),
        peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        num_params=cv.num_params(params),
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="benchmarks/results/curvature.json")
    p.add_argument("--estimators", default=",".join(ESTIMATORS))
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--size", type=int, default=16, help="input height = width")
    p.add_argument("--width", type=int, default=8, help="channels of the first conv")
    p.add_argument("--samples", type=int, default=16, help="probes of the *_k estimators")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--max-params", type=int, default=4096, help="hessian_diag's limit")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--save", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        print(json.dumps(measure(a, a.child, a.save)))
        return
    import jax
    import numpy as np

    config = dict(batch=a.batch, size=a.size, width=a.width, samples=a.samples, repeats=a.repeats)
    rows, estimates = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in a.estimators.split(","):
            save = os.path.join(tmp, f"{name}.npy")
            cmd = [sys.executable, __file__, "--child", name, "--save", save]
            cmd += [f"--{k.replace('_', '-')}={v}" for k, v in config.items()]
            cmd += [f"--max-params={a.max_params}"]
            out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode:
                lines = out.stderr.strip().splitlines()
                why = lines[-1] if lines else f"exit {out.returncode} (killed: out of memory?)"
                rows.append(dict(estimator=name, error=why))
            else:
                rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
                estimates[name] = np.load(save)
            print(json.dumps(rows[-1]), flush=True)
    grad_row = next((r for r in rows if r["estimator"] == "grad" and "time_s" in r), None)
    ref = estimates.get("ggn_exact")
    for r in rows:
        if grad_row and "time_s" in r:
            r["time_vs_grad"] = round(r["time_s"] / grad_row["time_s"], 2)
        if ref is not None and r["estimator"] in estimates and r["estimator"] != "grad":
            est = estimates[r["estimator"]]
            r["rel_err_vs_ggn"] = round(float(np.linalg.norm(est - ref) / np.linalg.norm(ref)), 4)
    result = dict(
        device=str(jax.devices()[0].device_kind),
        cpu_count=os.cpu_count(),
        platform=platform.platform(),
        jax=jax.__version__,
        date=time.strftime("%Y-%m-%d"),
        config=config,
        results=rows,
    )
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(result, f, indent=2)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
