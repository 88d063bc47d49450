"""The analysis model of PR-DARTS Sec. 3.2 (Eqs. 3-6) and Theorem 1's rate lambda(alpha).

Model (Zhou et al., NeurIPS 2020, Eqs. 3-6), nodes ``0 .. h-1``:

    X^(0) = conv(W^(0); X)                                                    (3)
    X^(l) = sum_{s<l} [ alpha^(l)_{s,1} zero + alpha^(l)_{s,2} X^(s)
                        + alpha^(l)_{s,3} conv(W^(l)_s; X^(s)) ],  l = 1..h-1  (4)
    u_i = sum_{s=0}^{h-1} <W_s, X_i^(s)>,   F = 1/(2n) sum_i (u_i - y_i)^2     (5)
    full-batch gradient descent with step eta on every W, alpha fixed          (6)

where ``conv(W; Z) = sigma(W Phi(Z))`` is a 1-D convolution written with the
im2col matrix ``Phi`` (kernel ``k_c``, stride 1, zero padding ``(k_c-1)/2``).
(Eq. 4 prints ``zero(X)``, ``skip(X)``; it means ``X^(s)``.)

Scaling (a choice; the digest reports that the paper's literal N(0, 1) weights
with ``tau = 1/sqrt(m)`` outside sigma diverged even at eta = 0.05): weights are
N(0, 1) as in Assumption 2, and the forward pass divides by the square root of
each fan-in (NTK parameterisation): ``conv(W; Z) = sigma(W Phi(Z) / sqrt(k_c c_in))`` and
``u = sum_s <W_s, X^(s)> / sqrt(m p)``.  Samples are normalised to
``||X_i||_F = 1`` (Assumption 3) and multiplied by ``sqrt(m_in p)`` before the
stem, so the stem's pre-activations have unit variance (``input_gain`` overrides).

Theorem 1: ``F(W(k+1)) <= (1 - eta lambda / 4) F(W(k))`` with

    lambda = 3 c_sigma / 4 * lambda_min(K) * sum_{s=0}^{h-2} (alpha^(h-1)_{s,3})^2
             * prod_{t=0}^{s-1} (alpha^(s)_{t,2})^2

:func:`thm1_rate` returns the alpha-dependent factor (the constant
``3 c_sigma lambda_min(K) / 4`` is dropped).  The printed product runs over the
skip weights of all edges ``t -> s`` into node ``s``; ``product="chain"`` takes
the chain edges ``t -> t+1`` instead (the paper's "path" reading).

Alpha arrays have shape ``(n_edges, 3)`` with columns (zero, skip, conv) and rows
in :func:`analysis_edges` order (by destination, then source).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "CONV",
    "SKIP",
    "ZERO",
    "AnalysisConfig",
    "NAMED_ALPHAS",
    "alpha_config",
    "analysis_edges",
    "conv_layer",
    "forward",
    "gd_losses",
    "init_params",
    "loss",
    "make_data",
    "ntk_gram",
    "setup",
    "thm1_rate",
]

#: Columns of an alpha row.
ZERO, SKIP, CONV = 0, 1, 2


def analysis_edges(h: int) -> tuple[tuple[int, int], ...]:
    """The ``(s, l)`` edges of the analysis cell, ``1 <= l <= h-1``, ``0 <= s < l``."""
    if h < 2:
        raise ValueError(f"h must be >= 2, got {h}")
    return tuple((s, d) for d in range(1, h) for s in range(d))


def thm1_rate(alpha: jax.Array, h: int, product: str = "printed") -> jax.Array:
    """Theorem 1's ``lambda / (3 c_sigma lambda_min(K) / 4)`` for fixed weights ``alpha``.

    Args:
      alpha: ``(h(h-1)/2, 3)`` op weights (zero, skip, conv) per edge.
      h: number of nodes.
      product: ``"printed"``: ``prod_{t<s} alpha^(s)_{t,2}`` (edges into node s, as
        printed); ``"chain"``: ``prod_{t<s} alpha^(t+1)_{t,2}`` (the chain 0->1->..->s).

    Returns:
      A scalar, non-decreasing in the skip weights of edges into nodes ``1..h-2``
      and in the conv weights of edges into node ``h-1``; independent of every zero
      weight, of conv weights on other edges and of skip weights into node ``h-1``.
    """
    if product not in ("printed", "chain"):
        raise ValueError(f"product must be 'printed' or 'chain', got {product!r}")
    alpha = jnp.asarray(alpha)
    edges = analysis_edges(h)
    if alpha.shape != (len(edges), 3):
        raise ValueError(f"alpha has shape {alpha.shape}, expected ({len(edges)}, 3)")
    idx = {e: i for i, e in enumerate(edges)}
    total = jnp.zeros((), alpha.dtype)
    for s in range(h - 1):
        term = alpha[idx[(s, h - 1)], CONV] ** 2
        for t in range(s):
            edge = (t, s) if product == "printed" else (t, t + 1)
            term = term * alpha[idx[edge], SKIP] ** 2
        total = total + term
    return total


#: Named weightings: ``(inner-edge row, last-node-edge row)``; "inner" edges end in
#: nodes ``1..h-2``, "last" edges in node ``h-1``.  Rows are (zero, skip, conv).
_HEAVY = {
    "zero": (0.8, 0.1, 0.1),
    "skip": (0.1, 0.8, 0.1),
    "conv": (0.1, 0.1, 0.8),
    "uniform": (1 / 3, 1 / 3, 1 / 3),
}
NAMED_ALPHAS: dict[str, tuple[str, str]] = {
    "skip-inner/conv-last": ("skip", "conv"),
    "all-conv": ("conv", "conv"),
    "all-skip": ("skip", "skip"),
    "conv-inner/skip-last": ("conv", "skip"),
    "all-zero": ("zero", "zero"),
    "uniform": ("uniform", "uniform"),
}


def alpha_config(name: str, h: int) -> np.ndarray:
    """The ``(n_edges, 3)`` weights of a named configuration (:data:`NAMED_ALPHAS`)."""
    try:
        inner, last = NAMED_ALPHAS[name]
    except KeyError:
        raise ValueError(
            f"unknown alpha configuration {name!r}; known: {', '.join(NAMED_ALPHAS)}"
        ) from None
    rows = [_HEAVY[last] if d == h - 1 else _HEAVY[inner] for _, d in analysis_edges(h)]
    return np.asarray(rows, dtype=np.float64)


@dataclasses.dataclass(frozen=True)
class AnalysisConfig:
    """Sizes of the analysis model.

    Attributes:
      m_in: input channels (m-bar).
      p: input length (p-bar = p; padding keeps the length).
      k_c: kernel size (odd).
      m: channels of every node.
      h: number of nodes (node ``h-1`` is the last).
      activation: ``"tanh"`` or ``"softplus"`` (Assumption 1: smooth, non-polynomial).
      input_gain: factor applied to the unit-norm samples before the stem; default
        ``sqrt(m_in p)`` (unit-variance pre-activations).
    """

    m_in: int = 3
    p: int = 16
    k_c: int = 3
    m: int = 64
    h: int = 5
    activation: str = "tanh"
    input_gain: float | None = None

    def __post_init__(self):
        if self.k_c % 2 != 1:
            raise ValueError(f"k_c must be odd, got {self.k_c}")
        if self.activation not in ("tanh", "softplus"):
            raise ValueError(f"unknown activation {self.activation!r}")


def _phi(z: jax.Array, k_c: int) -> jax.Array:
    """im2col ``Phi``: ``(n, c, p) -> (n, c k_c, p)``, rows channel-major, zero padded."""
    n, c, p = z.shape
    pad = (k_c - 1) // 2
    zp = jnp.pad(z, ((0, 0), (0, 0), (pad, pad)))
    cols = jnp.stack([zp[..., j : j + p] for j in range(k_c)], axis=2)  # (n, c, k, p)
    return cols.reshape(n, c * k_c, p)


def conv_layer(w: jax.Array, z: jax.Array, cfg: AnalysisConfig) -> jax.Array:
    """``sigma(W Phi(Z) / sqrt(fan_in))`` for a batch ``z`` of shape ``(n, c, p)``."""
    pre = jnp.einsum("ok,nkp->nop", w, _phi(z, cfg.k_c)) / np.sqrt(w.shape[1])
    return jnp.tanh(pre) if cfg.activation == "tanh" else jax.nn.softplus(pre)


def init_params(rng: np.random.Generator, cfg: AnalysisConfig) -> dict[str, jax.Array]:
    """N(0, 1) float32 weights (Assumption 2): stem ``(m, k_c m_in)``, one conv per edge
    ``(n_edges, m, k_c m)``, read-out ``(h, m, p)``.  Drawn with numpy (nothing to compile)."""
    n_edges = len(analysis_edges(cfg.h))
    shapes = {
        "stem": (cfg.m, cfg.k_c * cfg.m_in),
        "convs": (n_edges, cfg.m, cfg.k_c * cfg.m),
        "readout": (cfg.h, cfg.m, cfg.p),
    }
    return {k: jnp.asarray(rng.standard_normal(s), jnp.float32) for k, s in shapes.items()}


def make_data(rng: np.random.Generator, n: int, cfg: AnalysisConfig) -> tuple[jax.Array, jax.Array]:
    """``n`` random samples with ``||X_i||_F = 1`` (Assumption 3) and N(0, 1) targets."""
    x = rng.standard_normal((n, cfg.m_in, cfg.p))
    x = x / np.sqrt(np.sum(x**2, axis=(1, 2), keepdims=True))
    return jnp.asarray(x, jnp.float32), jnp.asarray(rng.standard_normal(n), jnp.float32)


def setup(
    seed: int, cfg: AnalysisConfig, n: int = 32
) -> tuple[dict[str, jax.Array], jax.Array, jax.Array]:
    """One seed's ``(params, x, y)``: the init and data shared by every weighting."""
    rng = np.random.default_rng(seed)
    params = init_params(rng, cfg)
    return (params, *make_data(rng, n, cfg))


def forward(
    params: dict[str, jax.Array], alpha: jax.Array, x: jax.Array, cfg: AnalysisConfig
) -> jax.Array:
    """Predictions ``u`` of shape ``(n,)`` (Eqs. 3-5) for samples ``x`` ``(n, m_in, p)``.

    The convolutions on the edges into one node are batched into one contraction
    (rows of ``alpha`` and ``params["convs"]`` for node ``d`` are contiguous).
    """
    gain = np.sqrt(cfg.m_in * cfg.p) if cfg.input_gain is None else cfg.input_gain
    nodes = [conv_layer(params["stem"], x * gain, cfg)]
    phis = [_phi(nodes[0], cfg.k_c)]
    act = jnp.tanh if cfg.activation == "tanh" else jax.nn.softplus
    scale = 1.0 / np.sqrt(cfg.k_c * cfg.m)
    for d in range(1, cfg.h):
        rows = slice(d * (d - 1) // 2, d * (d + 1) // 2)  # edges (0, d) .. (d-1, d)
        a = alpha[rows]
        conv = act(jnp.einsum("sok,snkp->snop", params["convs"][rows], jnp.stack(phis)) * scale)
        # the zero op contributes alpha[:, ZERO] * 0
        node = jnp.einsum("s,snop->nop", a[:, SKIP], jnp.stack(nodes)) + jnp.einsum(
            "s,snop->nop", a[:, CONV], conv
        )
        nodes.append(node)
        if d < cfg.h - 1:
            phis.append(_phi(node, cfg.k_c))
    feats = jnp.stack(nodes, axis=1)  # (n, h, m, p)
    return jnp.einsum("nhmp,hmp->n", feats, params["readout"]) / np.sqrt(cfg.m * cfg.p)


def loss(
    params: dict[str, jax.Array],
    alpha: jax.Array,
    x: jax.Array,
    y: jax.Array,
    cfg: AnalysisConfig,
) -> jax.Array:
    """Eq. 5: ``1/(2n) sum_i (u_i - y_i)^2``."""
    u = forward(params, alpha, x, cfg)
    return 0.5 * jnp.mean((u - y) ** 2)


def ntk_gram(
    params: dict[str, jax.Array], alpha: jax.Array, x: jax.Array, cfg: AnalysisConfig
) -> jax.Array:
    """The empirical NTK Gram matrix ``H_ij = <du_i/dW, du_j/dW>`` over all weights, ``(n, n)``.

    Near initialisation, GD on Eq. 5 decreases the loss at a rate set by
    ``lambda_min(H)`` (Theorem 1 bounds it from below by ``lambda(alpha)``).
    """
    jac = jax.jacrev(forward)(params, jnp.asarray(alpha, jnp.float32), x, cfg)
    flat = [j.reshape(x.shape[0], -1) for j in jax.tree.leaves(jac)]
    return sum(f @ f.T for f in flat)


@functools.partial(jax.jit, static_argnames=("cfg", "eta", "steps"))
def _gd_run(
    params: dict[str, jax.Array],
    alphas: jax.Array,
    x: jax.Array,
    y: jax.Array,
    *,
    cfg: AnalysisConfig,
    eta: float,
    steps: int,
) -> jax.Array:
    """Losses ``(n_configs, steps + 1)`` of GD from ``params`` for each row of ``alphas``."""
    grad = jax.value_and_grad(loss)

    def one_run(alpha):
        def body(p, _):
            value, g = grad(p, alpha, x, y, cfg)
            return jax.tree.map(lambda a, b: a - eta * b, p, g), value

        final, values = jax.lax.scan(body, params, None, length=steps)
        return jnp.concatenate([values, loss(final, alpha, x, y, cfg)[None]])

    return jax.vmap(one_run)(alphas)


def gd_losses(
    alphas: jax.Array | Sequence[np.ndarray],
    seeds: Sequence[int],
    cfg: AnalysisConfig = AnalysisConfig(),
    *,
    n: int = 32,
    eta: float = 0.5,
    steps: int = 200,
) -> np.ndarray:
    """Full-batch GD (Eq. 6) from the same init for every weighting.

    For each seed, one init and one data set are drawn (:func:`setup`) and shared
    by all weightings, so differences come from ``alpha`` alone.  One compiled
    program per ``(cfg, n, eta, steps, n_configs)``, reused across seeds and calls.

    Args:
      alphas: ``(n_configs, n_edges, 3)`` fixed weightings.
      seeds: integer seeds (init and data).
      cfg: model sizes.
      n: number of samples.
      eta: step size.
      steps: GD steps.

    Returns:
      Training losses ``(n_seeds, n_configs, steps + 1)`` (entry 0 at init).
    """
    alphas = jnp.asarray(np.asarray(alphas), dtype=jnp.float32)
    out = []
    for seed in seeds:
        params, x, y = setup(seed, cfg, n)
        out.append(np.asarray(_gd_run(params, alphas, x, y, cfg=cfg, eta=float(eta), steps=steps)))
    return np.stack(out)


# --------------------------------------------------------------------------------------
# Theorem 4: the deep cell A against the two-branch shallow cell B (Sec. 4.2, Fig. 3)
# --------------------------------------------------------------------------------------
#
# Deep cell A (Fig. 3a) is the cell of Eqs. 3-5 above (:func:`forward`): nodes 0..h-1,
# node 0 = conv(W^(0); X), every node l >= 1 fed by all earlier nodes (Eq. 7 with fixed
# gates g, here the rows of ``alpha``).  Shallow cell B (Fig. 3b) puts nodes
# 0..h/2-1 in one branch and nodes h/2..h-1 in another, "each with input X": node h/2
# is conv(W'; X) with its own stem weights W' (``params["stem2"]``), and only edges
# inside a branch exist.  Both use the read-out of Eq. 5 over all h nodes.  Theorem 4:
# with every gate of B equal to the same gate of A, GD decreases B's training loss at
# a rate lambda_B >= lambda_A + (a positive term) > lambda_A (Theorem 1's lambda for A).


def _half(h: int) -> int:
    if h < 4 or h % 2:
        raise ValueError(f"Theorem 4's two branches need an even h >= 4, got {h}")
    return h // 2


def shallow_edge_mask(h: int) -> np.ndarray:
    """``(n_edges,)`` bool: the edges of :func:`analysis_edges` that cell B keeps (both
    ends in the same branch, ``s, l < h/2`` or ``s, l >= h/2``)."""
    half = _half(h)
    return np.array([(s < half) == (d < half) for s, d in analysis_edges(h)])


def thm4_setup(
    seed: int, cfg: AnalysisConfig, n: int = 32
) -> tuple[dict[str, jax.Array], jax.Array, jax.Array]:
    """:func:`setup` plus B's second stem ``"stem2"`` ``(m, k_c m_in)``, drawn from
    ``np.random.default_rng([seed, 1])`` so that every weight the two cells share (and
    the data) is exactly :func:`setup`'s."""
    params, x, y = setup(seed, cfg, n)
    w = np.random.default_rng([seed, 1]).standard_normal(params["stem"].shape)
    return {**params, "stem2": jnp.asarray(w, jnp.float32)}, x, y


def forward_shallow(
    params: dict[str, jax.Array], alpha: jax.Array, x: jax.Array, cfg: AnalysisConfig
) -> jax.Array:
    """Predictions ``(n,)`` of cell B for samples ``x`` ``(n, m_in, p)``.

    ``alpha`` and ``params["convs"]`` are A's ``(n_edges, ...)`` arrays; the rows of
    edges between the branches are not used (so their gradients are zero).
    """
    half = _half(cfg.h)
    gain = np.sqrt(cfg.m_in * cfg.p) if cfg.input_gain is None else cfg.input_gain
    act = jnp.tanh if cfg.activation == "tanh" else jax.nn.softplus
    scale = 1.0 / np.sqrt(cfg.k_c * cfg.m)
    nodes, phis = [], []
    for d in range(cfg.h):
        if d in (0, half):  # the first node of a branch: a conv of the input X (Eq. 3)
            node = conv_layer(params["stem" if d == 0 else "stem2"], x * gain, cfg)
        else:
            first = 0 if d < half else half  # sources in d's own branch
            rows = slice(d * (d - 1) // 2 + first, d * (d + 1) // 2)
            a = alpha[rows]
            conv = act(
                jnp.einsum("sok,snkp->snop", params["convs"][rows], jnp.stack(phis[first:d]))
                * scale
            )
            node = jnp.einsum("s,snop->nop", a[:, SKIP], jnp.stack(nodes[first:d])) + jnp.einsum(
                "s,snop->nop", a[:, CONV], conv
            )
        nodes.append(node)
        phis.append(_phi(node, cfg.k_c))
    feats = jnp.stack(nodes, axis=1)  # (n, h, m, p)
    return jnp.einsum("nhmp,hmp->n", feats, params["readout"]) / np.sqrt(cfg.m * cfg.p)


THM4_CELLS: tuple[str, ...] = ("deep", "shallow")


def thm4_forward(
    params: dict[str, jax.Array],
    alpha: jax.Array,
    x: jax.Array,
    cfg: AnalysisConfig,
    cell: str,
) -> jax.Array:
    """Cell A (``"deep"``, :func:`forward`; ignores ``"stem2"``) or B (``"shallow"``)."""
    if cell == "deep":
        return forward({k: v for k, v in params.items() if k != "stem2"}, alpha, x, cfg)
    if cell == "shallow":
        return forward_shallow(params, alpha, x, cfg)
    raise ValueError(f"cell must be one of {THM4_CELLS}, got {cell!r}")


def thm4_loss(
    params: dict[str, jax.Array],
    alpha: jax.Array,
    x: jax.Array,
    y: jax.Array,
    cfg: AnalysisConfig,
    cell: str,
) -> jax.Array:
    """Eq. 5 for cell ``cell``: ``1/(2n) sum_i (u_i - y_i)^2``."""
    return 0.5 * jnp.mean((thm4_forward(params, alpha, x, cfg, cell) - y) ** 2)


@functools.partial(jax.jit, static_argnames=("cfg", "eta", "steps", "cell"))
def _thm4_gd_run(params, alphas, x, y, *, cfg, eta, steps, cell):
    grad = jax.value_and_grad(thm4_loss)

    def one_run(alpha):
        def body(p, _):
            value, g = grad(p, alpha, x, y, cfg, cell)
            return jax.tree.map(lambda a, b: a - eta * b, p, g), value

        final, values = jax.lax.scan(body, params, None, length=steps)
        return jnp.concatenate([values, thm4_loss(final, alpha, x, y, cfg, cell)[None]])

    return jax.vmap(one_run)(alphas)


def thm4_gd_losses(
    alphas: jax.Array | Sequence[np.ndarray],
    seeds: Sequence[int],
    cfg: AnalysisConfig,
    cell: str,
    *,
    n: int = 32,
    eta: float = 0.5,
    steps: int = 200,
) -> np.ndarray:
    """Full-batch GD (Eq. 6) on cell ``cell`` from :func:`thm4_setup`'s init, per seed.

    Both cells start from the same shared weights and data for a seed, and each gate
    configuration (row of ``alphas``) is used by both, as Theorem 4 assumes.

    Returns:
      Training losses ``(n_seeds, n_configs, steps + 1)``.
    """
    if cell not in THM4_CELLS:
        raise ValueError(f"cell must be one of {THM4_CELLS}, got {cell!r}")
    _half(cfg.h)
    alphas = jnp.asarray(np.asarray(alphas), dtype=jnp.float32)
    out = []
    for seed in seeds:
        params, x, y = thm4_setup(seed, cfg, n)
        out.append(
            np.asarray(
                _thm4_gd_run(params, alphas, x, y, cfg=cfg, eta=float(eta), steps=steps, cell=cell)
            )
        )
    return np.stack(out)


def thm4_ntk_gram(
    params: dict[str, jax.Array],
    alpha: jax.Array,
    x: jax.Array,
    cfg: AnalysisConfig,
    cell: str,
) -> jax.Array:
    """The empirical NTK Gram ``(n, n)`` of cell ``cell`` (as :func:`ntk_gram`)."""
    jac = jax.jacrev(thm4_forward)(params, jnp.asarray(alpha, jnp.float32), x, cfg, cell)
    flat = [j.reshape(x.shape[0], -1) for j in jax.tree.leaves(jac)]
    return sum(f @ f.T for f in flat)


def thm4_rates(alpha: jax.Array, h: int) -> tuple[jax.Array, jax.Array]:
    """Theorem 4's ``(lambda_A, lower bound of lambda_B)`` without ``3 c_sigma lambda_min(K)/4``.

    ``lambda_A`` is :func:`thm1_rate` (printed product).  The bound is
    ``lambda_A + sum_{s=h/2}^{h-2} (g^(h-1)_{s,3})^2 prod_{t=h/2}^{s-1} (g^(s)_{t,2})^2``;
    the printed sum runs to ``s = h-1``, a self-edge ``h-1 -> h-1`` that does not
    exist, so that term is left out.
    """
    half = _half(h)
    alpha = jnp.asarray(alpha)
    idx = {e: i for i, e in enumerate(analysis_edges(h))}
    lam_a = thm1_rate(alpha, h)
    extra = jnp.zeros((), alpha.dtype)
    for s in range(half, h - 1):
        term = alpha[idx[(s, h - 1)], CONV] ** 2
        for t in range(half, s):
            term = term * alpha[idx[(t, s)], SKIP] ** 2
        extra = extra + term
    return lam_a, lam_a + extra


def thm4_sizes(cfg: AnalysisConfig) -> dict[str, dict[str, int]]:
    """Per cell: ``params`` (weights the loss depends on), ``edges`` (node-to-node convs)
    and ``depth`` (convs on the longest path from ``X`` to a node, stems included).

    A: one stem, all ``h(h-1)/2`` edges, depth ``h``.  B: two stems, ``2 * (h/2)(h/2-1)/2``
    edges, depth ``h/2``.  Both have the read-out ``h m p``.
    """
    half = _half(cfg.h)
    stem = cfg.m * cfg.k_c * cfg.m_in
    conv = cfg.m * cfg.k_c * cfg.m
    readout = cfg.h * cfg.m * cfg.p
    edges_a = len(analysis_edges(cfg.h))
    edges_b = int(shallow_edge_mask(cfg.h).sum())
    return dict(
        deep=dict(params=stem + edges_a * conv + readout, edges=edges_a, depth=cfg.h),
        shallow=dict(params=2 * stem + edges_b * conv + readout, edges=edges_b, depth=half),
    )


__all__ += [
    "THM4_CELLS",
    "forward_shallow",
    "shallow_edge_mask",
    "thm4_forward",
    "thm4_gd_losses",
    "thm4_loss",
    "thm4_ntk_gram",
    "thm4_rates",
    "thm4_setup",
    "thm4_sizes",
]
