"""Redraw Fig. 2.1 of the RARTS thesis (Xue 2022): the solvable model of Example 2.4.

Three panels of RARTS trajectories in the (alpha, w) plane, each against first-order
DARTS (which goes to the spurious (2, 2)):

  left:   beta = 10, u0 = 0, lambda varied
  middle: lambda = 10, u0 = 0, beta varied
  right:  lambda = beta = 10, the primary weight's start u0 (the caption's y0) varied

plus the Lagrangian (Eq. 2.8) over the iterations, as the gap ``L^t - L*`` on a log
scale.  The thesis gives neither step sizes nor starting points: RARTS here takes
``--lr-scale`` times the Theorem 2.2 bounds (c1, c2, c3) per block, so the Lagrangian
provably never increases; every method starts at (w, alpha) = (-2, 2), the start of
DARTS' own picture of this model.  Prints the limits next to the closed form and writes
``fig2_1.png``, ``lagrangian.png`` and ``rarts_toy.json`` to ``--out``.

    python experiments/rarts_toy.py --out runs/rarts_toy
"""

from __future__ import annotations

import argparse
import json
import os
import time

import jax
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from jaxnas.toys import rarts_solvable as toy

PANELS = (
    (
        "lam",
        "left: beta = 10, u0 = 0",
        [dict(lam=v, beta=10.0, u0=0.0) for v in (1, 2, 5, 10, 100)],
    ),
    (
        "beta",
        "middle: lambda = 10, u0 = 0",
        [dict(lam=10.0, beta=v, u0=0.0) for v in (1, 2, 5, 10, 100)],
    ),
    ("u0", "right: lambda = beta = 10", [dict(lam=10.0, beta=10.0, u0=v) for v in (-2, 0, 2, 4)]),
)
LABEL = {"lam": "$\\lambda$", "beta": "$\\beta$", "u0": "$u^0$"}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="runs/rarts_toy", help="output folder (created)")
    p.add_argument("--steps", type=int, default=20000, help="iterations per run")
    p.add_argument("--w0", type=float, default=-2.0, help="initial w (all methods)")
    p.add_argument("--alpha0", type=float, default=2.0, help="initial alpha (all methods)")
    p.add_argument(
        "--lr-scale", type=float, default=0.9, help="RARTS step sizes as a fraction of c1, c2, c3"
    )
    p.add_argument(
        "--darts-lr", type=float, default=0.05, help="eta_w = eta_alpha of the baselines"
    )
    p.add_argument("--milenas-lam", type=float, default=1.0, help="lambda of MiLeNAS-1 (Eq. 2.23)")
    p.add_argument("--xi", type=float, nargs="+", default=[0.1, 0.5], help="xi values of DARTS-2")
    args = p.parse_args(argv)
    if args.steps < 1:
        p.error("--steps must be positive")
    if not 0 < args.lr_scale < 1:
        p.error("--lr-scale must be in (0, 1): Theorem 2.2 needs strict inequalities")
    return args


def run_rarts_config(cfg: dict, args: argparse.Namespace) -> dict:
    lam, beta, u0 = cfg["lam"], cfg["beta"], cfg["u0"]
    c1, c2, c3 = toy.step_size_bounds(lam, beta)
    s = args.lr_scale
    traj = toy.run_rarts(
        lam, beta, u0=u0, w0=args.w0, alpha0=args.alpha0,
        eta_u=s * c1, eta_w=s * c2, eta_alpha=s * c3, steps=args.steps,
    )  # fmt: skip
    traj = {k: np.asarray(v) for k, v in traj.items()}
    closed = dict(zip(("u", "w", "alpha"), (float(x) for x in toy.rarts_equilibrium(lam, beta))))
    limit = {k: float(traj[k][-1]) for k in ("u", "w", "alpha")}
    lag = traj["lagrangian"]
    l_star = float(toy.rarts_min_value(lam, beta))
    rise = float(np.max(np.diff(lag)))
    return dict(
        lam=lam,
        beta=beta,
        u0=u0,
        eta=dict(u=s * c1, w=s * c2, alpha=s * c3),
        limit=limit,
        closed_form=closed,
        max_abs_error=max(abs(limit[k] - closed[k]) for k in closed),
        lagrangian_final=float(lag[-1]),
        lagrangian_star=l_star,
        lagrangian_max_rise=rise,
        lagrangian_monotone=rise <= 1e-12 * max(1.0, abs(float(lag[0]))),
        _traj=traj,
    )


def draw(panels, darts1, path):
    fig = Figure(figsize=(15, 4.6))
    axes = fig.subplots(1, 3)
    for ax, (key, title, runs) in zip(axes, panels):
        ax.plot(darts1["alpha"], darts1["w"], "k--", lw=1.2, label="DARTS-1")
        ax.plot([2], [2], "kx", ms=8)
        for r in runs:
            (line,) = ax.plot(r["_traj"]["alpha"], r["_traj"]["w"], lw=1.2,
                              label=f"RARTS {LABEL[key]}={r[key]:g}")  # fmt: skip
            ax.plot([r["closed_form"]["alpha"]], [r["closed_form"]["w"]], "o", mfc="none",
                    color=line.get_color(), ms=7)  # fmt: skip
        ax.plot([1], [1], "r*", ms=14, label="optimum (1, 1)")
        ax.set_title(title)
        ax.set_xlabel("$\\alpha$")
        ax.set_ylabel("$w$")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    fig.suptitle("Solvable model (thesis Fig. 2.1): trajectories in (alpha, w); o = closed form")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def draw_lagrangian(panels, path):
    fig = Figure(figsize=(15, 4.2))
    axes = fig.subplots(1, 3)
    for ax, (key, title, runs) in zip(axes, panels):
        for r in runs:
            # below ~1e-14 the gap is float64 rounding of L ~ 1: clip it there
            gap = np.maximum(r["_traj"]["lagrangian"] - r["lagrangian_star"], 1e-14)
            ax.semilogy(gap, lw=1.2, label=f"{LABEL[key]}={r[key]:g}")
        ax.xaxis.set_major_locator(MaxNLocator(5))
        ax.set_title(title)
        ax.set_xlabel("iteration t")
        ax.set_ylabel("$\\mathcal{L}(u^t, w^t, \\alpha^t) - \\mathcal{L}^*$")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("RARTS Lagrangian (Eq. 2.8) over iterations, step sizes under Theorem 2.2")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None) -> dict:
    args = parse_args(argv)
    t0 = time.perf_counter()
    with jax.enable_x64(True):
        panels = [(k, t, [run_rarts_config(c, args) for c in cfgs]) for k, t, cfgs in PANELS]
        base = dict(w0=args.w0, alpha0=args.alpha0, eta_w=args.darts_lr, eta_alpha=args.darts_lr)
        darts1 = {k: np.asarray(v) for k, v in toy.run_darts1(**base, steps=args.steps).items()}
        milenas = toy.run_milenas1(**base, lam=args.milenas_lam, steps=args.steps)
        darts2 = {xi: toy.run_darts2(**base, xi=xi, steps=args.steps) for xi in args.xi}

    print(f"RARTS limits after {args.steps} steps (eta = {args.lr_scale} x Theorem 2.2 bounds)")
    print(f"{'lam':>6} {'beta':>6} {'u0':>5} | {'u':>9} {'w':>9} {'alpha':>9} | "
          f"{'u*':>9} {'w*':>9} {'alpha*':>9} | {'max err':>8} | L monotone")  # fmt: skip
    for _, _, runs in panels:
        for r in runs:
            lim, cf = r["limit"], r["closed_form"]
            print(
                f"{r['lam']:6g} {r['beta']:6g} {r['u0']:5g} | "
                f"{lim['u']:9.6f} {lim['w']:9.6f} {lim['alpha']:9.6f} | "
                f"{cf['u']:9.6f} {cf['w']:9.6f} {cf['alpha']:9.6f} | "
                f"{r['max_abs_error']:8.1e} | {r['lagrangian_monotone']}"
            )
    baselines = [("DARTS-1", darts1, 2.0)]
    baselines.append((f"MiLeNAS-1 (lam={args.milenas_lam:g})", milenas, 2.0))
    baselines += [
        (f"DARTS-2 (xi={xi:g})", d, toy.darts2_equilibrium(xi)) for xi, d in darts2.items()
    ]
    print("baselines: limit (w, alpha) vs closed form")
    for name, traj, cf in baselines:
        w, a = float(traj["w"][-1]), float(traj["alpha"][-1])
        print(f"  {name:24s} ({w:.6f}, {a:.6f})   closed form ({cf:.6f}, {cf:.6f})")

    os.makedirs(args.out, exist_ok=True)
    draw(panels, darts1, os.path.join(args.out, "fig2_1.png"))
    draw_lagrangian(panels, os.path.join(args.out, "lagrangian.png"))
    result = dict(
        settings=vars(args),
        rarts=[
            dict(panel=k, **{n: v for n, v in r.items() if not n.startswith("_")})
            for k, _, runs in panels
            for r in runs
        ],
        baselines=[
            dict(
                method=name,
                limit=dict(w=float(t["w"][-1]), alpha=float(t["alpha"][-1])),
                closed_form=dict(w=float(cf), alpha=float(cf)),
            )  # fmt: skip
            for name, t, cf in baselines
        ],
        wall_s=time.perf_counter() - t0,
    )
    with open(os.path.join(args.out, "rarts_toy.json"), "w") as f:
        json.dump(result, f, indent=2)
    print(f"wrote {args.out}/fig2_1.png, lagrangian.png, rarts_toy.json ({result['wall_s']:.1f} s)")
    return result


if __name__ == "__main__":
    main()
