"""DARTS' recurrent cell and word-level language model, search and discrete, as pure functions.

Cell (DARTS ``rnn/model.py``), for input ``x_t (B, E)`` and ``h_{t-1} (B, H)``:

    [c_0, k_0] = [x_t * m_x, h_{t-1} * m_h] W_0                      W_0: (E + H, 2H)
    s_0 = h_{t-1} + sigmoid(c_0) * (tanh(k_0) - h_{t-1})

and node ``i = 1..8`` with its own ``W_i (H, 2H)``, for an ``(op f, predecessor j)`` pair,

    [c, k] = (s_j * m_h) W_i,     hw_f(s_j) = s_j + sigmoid(c) * (f(k) - s_j)      (highway)

The cell output ``h_t`` is the mean of the ``concat`` states.

* **Search cell** (SparseNAS Eq. 1 on DARTS' RNN space, :func:`supernet_cell`):
  ``s_i = sum_{j < i} sum_f A[(i, j), f] hw_f(s_j)`` with free real ``A (36, 4)``
  over ``f in {tanh, relu, sigmoid, identity}`` (no ``none``: ``A = 0`` is the
  zero op), ``W_i`` shared by node ``i``'s edges (as DARTS' ``model_search.py``);
  BatchNorm without affine after ``s_0`` and after every node (DARTS' search
  cell; optional here), the output the mean of ``s_1 .. s_8``.
* **Discrete cell** (:func:`discrete_cell`) of an
  :class:`~jaxnas.rnn.genotype.RNNGenotype`: node ``i`` is the *mean* of
  ``hw_f(s_j)`` over its pairs (a DARTS cell: one pair, DARTS' update exactly).
  So the search cell with ``A = 1/k`` on a node's ``k`` pairs, no BN and all
  nodes kept computes the same function (a test checks it).

Language model (DARTS ``RNNModel``, AWD-LSTM's regularisation): embedding ``(V, E)``
with ``E = H`` tied to the decoder, ``logits = dropout(h_t) E^T + b``. Dropouts
(``Dropouts``; all *variational*: one mask per sequence, the same at every time
step): ``embedding`` drops whole words (rows of ``E``, ``dropoute``), ``input``
the embedded inputs (``dropouti``), ``x`` and ``hidden`` the cell's inputs to
``W_0`` and ``W_i`` (``dropoutx``, ``dropouth``), ``output`` the cell output
(``dropout``).

Time runs in one ``jax.lax.scan``; windows are padded to a fixed length and
the true length masks the tail (the state stops updating, the loss ignores
it), so one compiled program serves every BPTT length.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxnas.rnn.genotype import RNN_OPS, STEPS, RNNGenotype, edge_index

__all__ = [
    "ACTIVATIONS",
    "DARTS_DROPOUTS",
    "INIT_RANGE",
    "Dropouts",
    "batch_norm",
    "discrete_cell",
    "init_discrete_params",
    "init_supernet_params",
    "init_state",
    "lm_forward",
    "lm_loss",
    "supernet_arch_for",
    "supernet_cell",
    "supernet_states",
    "variational_mask",
]

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "tanh": jnp.tanh,
    "relu": jax.nn.relu,
    "sigmoid": jax.nn.sigmoid,
    "identity": lambda x: x,
}
INIT_RANGE = 0.04  # DARTS rnn/model.py: cell weights ~ U(-0.04, 0.04)
EMB_RANGE = 0.1  # embedding ~ U(-0.1, 0.1), decoder bias 0

#: DARTS' (AWD-LSTM's) dropouts of its PTB runs, search and retraining, as the config's
#: ``model`` keys (``dropoute``, the whole-word dropout, differs: 0 searching, 0.1 retraining).
DARTS_DROPOUTS = dict(dropout=0.75, dropouth=0.25, dropoutx=0.75, dropouti=0.2)


@dataclasses.dataclass(frozen=True)
class Dropouts:
    """Drop probabilities (DARTS' names in brackets); 0 everywhere = no dropout."""

    output: float = 0.0  # dropout: locked, on the cell output
    hidden: float = 0.0  # dropouth: on s_j before W_i (and h_{t-1} before W_0)
    x: float = 0.0  # dropoutx: on x_t before W_0
    input: float = 0.0  # dropouti: locked, on the embeddings
    embedding: float = 0.0  # dropoute: whole words

    def __post_init__(self):
        for f in dataclasses.fields(self):
            p = getattr(self, f.name)
            if not 0.0 <= p < 1.0:
                raise ValueError(f"dropout {f.name} must be in [0, 1), got {p}")

    @classmethod
    def from_config(cls, model: Any) -> Dropouts:
        """From a config's ``model`` section, by DARTS' key names (``dropout``,
        ``dropouth``, ``dropoutx``, ``dropouti``, ``dropoute``)."""
        return cls(
            output=model["dropout"],
            hidden=model["dropouth"],
            x=model["dropoutx"],
            input=model["dropouti"],
            embedding=model["dropoute"],
        )


# --------------------------------------------------------------------------- params


def _uniform(rng, shape, r):
    return jax.random.uniform(rng, shape, jnp.float32, -r, r)


def _common_params(rng: jax.Array, vocab: int, size: int) -> dict[str, Any]:
    k1, k2 = jax.random.split(rng)
    return {
        "embedding": _uniform(k1, (vocab, size), EMB_RANGE),
        "bias": jnp.zeros((vocab,), jnp.float32),
        "w0": _uniform(k2, (2 * size, 2 * size), INIT_RANGE),
    }


def init_supernet_params(rng: jax.Array, vocab: int, size: int, steps: int = STEPS) -> dict:
    """``{"embedding": (V, H), "bias": (V,), "w0": (2H, 2H), "ws": (steps, H, 2H)}``."""
    r1, r2 = jax.random.split(rng)
    p = _common_params(r1, vocab, size)
    p["ws"] = _uniform(r2, (steps, size, 2 * size), INIT_RANGE)
    return p


def init_discrete_params(rng: jax.Array, vocab: int, size: int, genotype: RNNGenotype) -> dict:
    """As :func:`init_supernet_params` with ``"ws": {"i": (H, 2H)}`` for the kept nodes ``i``."""
    r1, r2 = jax.random.split(rng)
    p = _common_params(r1, vocab, size)
    keys = jax.random.split(r2, genotype.steps)
    p["ws"] = {
        str(i): _uniform(keys[i - 1], (size, 2 * size), INIT_RANGE)
        for i, pairs in enumerate(genotype.nodes, start=1)
        if pairs
    }
    return p


# ----------------------------------------------------------------------------- cells


def batch_norm(s: jax.Array, eps: float = 1e-5) -> jax.Array:
    """BatchNorm1d without affine, batch statistics: ``(s - mean_B) / sqrt(var_B + eps)``."""
    mean = jnp.mean(s, axis=0, keepdims=True)
    var = jnp.mean(jnp.square(s - mean), axis=0, keepdims=True)
    return (s - mean) * jax.lax.rsqrt(var + eps)


def init_state(w0, x, h, x_mask, h_mask) -> jax.Array:
    """``s_0 = h + sigmoid(c_0) (tanh(k_0) - h)``, ``[c_0, k_0] = [x m_x, h m_h] W_0``."""
    size = h.shape[-1]
    ck = jnp.concatenate([x * x_mask, h * h_mask], axis=-1) @ w0
    return h + jax.nn.sigmoid(ck[..., :size]) * (jnp.tanh(ck[..., size:]) - h)


def _gate(s, w, h_mask):
    """``(sigmoid(c), k)`` with ``[c, k] = (s m_h) W`` for ``s (..., B, H)``."""
    size = s.shape[-1]
    ck = (s * h_mask) @ w
    return jax.nn.sigmoid(ck[..., :size]), ck[..., size:]


#: An edge's combination of its op outputs: ``combine(outs, w) -> (B, H)`` (see
#: :func:`supernet_states`).
Combine = Callable[[Sequence[jax.Array | None], jax.Array], jax.Array]


def supernet_states(
    params: dict,
    arch: jax.Array,
    x: jax.Array,
    h: jax.Array,
    x_mask: jax.Array,
    h_mask: jax.Array,
    *,
    ops: Sequence[str] = RNN_OPS,
    batchnorm: bool = True,
    scan_nodes: bool = False,
    active: jax.Array | None = None,
    combine: Combine | None = None,
) -> list[jax.Array]:
    """The states ``[s_0, s_1, ..., s_steps]`` (each ``(B, H)``) of one step of the search cell.

    ``arch (36, len(ops))`` holds the edge weights ``A``; row
    :func:`~jaxnas.rnn.genotype.edge_index` ``(i, j)`` mixes the ops of edge ``s_j -> s_i``
    (SparseNAS Eq. 1; DARTS Eq. 1 with ``A = softmax(alpha)``):
    ``s_i = sum_{j < i} sum_f A[(i, j), f] hw_f(s_j)``.  A ``"none"`` column of ``ops``
    (DARTS' RNN primitives) adds exactly zero: its op is not computed.

    ``active`` (bool, ``arch``'s shape): the ops an edge computes (an edge mixer's
    ``active`` hook, :class:`jaxnas.supernet.Mixer`); the others' ``hw_f`` are exact
    zeros in value and gradient.  ``combine(outs, w)``: mixes one edge's op outputs
    ``outs[f] (B, H)`` (``None`` for ``"none"``) by its weights ``w (n_ops,)`` in place
    of the weighted sum (the mixer's ``combine`` hook), vmapped over a node's edges.

    ``scan_nodes``: one compiled node body in a ``lax.scan`` over the nodes, every
    node reading all ``steps + 1`` state slots with ``A = 0`` on the slots it may not
    use (the same function; about 2x the cell's multiply-adds, a smaller program).
    """
    s0 = init_state(params["w0"], x, h, x_mask, h_mask)
    s0 = batch_norm(s0) if batchnorm else s0
    ops = tuple(ops)
    if scan_nodes:
        return _scanned_states(params["ws"], arch, s0, h_mask, ops, batchnorm, active, combine)
    states = [s0]
    for i in range(1, params["ws"].shape[0] + 1):
        prev = jnp.stack(states)  # (i, B, H): all predecessors share W_i
        rows = slice(edge_index(i, 0), edge_index(i, 0) + i)  # node i's group
        on = None if active is None else active[rows]
        s = _node(prev, params["ws"][i - 1], arch[rows], on, h_mask, ops, combine)
        states.append(batch_norm(s) if batchnorm else s)
    return states


def _node(prev, w, a, on, h_mask, ops, combine, valid=None):
    """Node ``i`` from its predecessors ``prev (n, B, H)`` and their edges' weights ``a
    (n, n_ops)`` (``on``: active ops or None; ``valid (n,)``: 0 on padded slots)."""
    c, k = _gate(prev, w, h_mask)
    live = [o for o, f in enumerate(ops) if f != "none"]
    hw = jnp.stack([prev + c * (ACTIVATIONS[ops[o]](k) - prev) for o in live])  # (live, n, B, H)
    if on is not None:  # inactive ops: exact zeros in value and gradient
        hw = jnp.where(on[:, live].T[:, :, None, None], hw, jnp.zeros((), hw.dtype))
    if combine is None:
        a = a if len(live) == len(ops) else a[:, live]
        return jnp.einsum("jo,ojbh->bh", a, hw)  # Eq. 1: sum_j sum_o A hw_o(s_j)
    outs: list[jax.Array | None] = [None] * len(ops)
    for n, o in enumerate(live):
        outs[o] = hw[n]
    y = jax.vmap(combine)(outs, a)  # (n, B, H): one combination per edge
    if valid is not None:
        y = y * valid[:, None, None]
    return jnp.sum(y, axis=0)


def _scanned_states(ws, arch, s0, h_mask, ops, batchnorm, active, combine):
    steps = ws.shape[0]
    idx = np.zeros((steps, steps + 1), np.int32)
    mask = np.zeros((steps, steps + 1), np.float32)
    for i in range(1, steps + 1):
        for j in range(i):
            idx[i - 1, j], mask[i - 1, j] = edge_index(i, j), 1.0
    a_pad = arch[idx] * jnp.asarray(mask, arch.dtype)[..., None]  # (steps, steps + 1, n_ops)
    on_pad = None if active is None else active[idx] & (mask > 0)[..., None]
    buf = jnp.zeros((steps + 1, *s0.shape), s0.dtype).at[0].set(s0)

    def node(buf, inp):
        i, w, a, on, valid = inp
        s = _node(buf, w, a, on, h_mask, ops, combine, valid)  # Eq. 1 (A = 0 on slots j >= i)
        return buf.at[i].set(batch_norm(s) if batchnorm else s), None

    valid = jnp.asarray(mask, s0.dtype)
    buf, _ = jax.lax.scan(node, buf, (jnp.arange(1, steps + 1), ws, a_pad, on_pad, valid))
    return [buf[i] for i in range(steps + 1)]


#: One step of a cell: ``cell(x_t, h, x_mask, h_mask) -> h_t`` (what :func:`lm_forward` runs).
CellFn = Callable[[jax.Array, jax.Array, jax.Array, jax.Array], jax.Array]


def supernet_cell(
    params: dict,
    arch: jax.Array,
    *,
    ops: Sequence[str] = RNN_OPS,
    batchnorm: bool = True,
    scan_nodes: bool = False,
    active: jax.Array | None = None,
    combine: Combine | None = None,
) -> CellFn:
    """The search cell of ``params`` and ``A = arch``: one step is ``h_t = mean(s_1 ..
    s_steps)`` (B, H) of :func:`supernet_states` with these options (module docstring)."""
    options = dict(ops=ops, batchnorm=batchnorm, scan_nodes=scan_nodes)
    options.update(active=active, combine=combine)

    def cell(x, h, x_mask, h_mask):
        states = supernet_states(params, arch, x, h, x_mask, h_mask, **options)
        return jnp.mean(jnp.stack(states[1:]), axis=0)

    return cell


def discrete_cell(params: dict, genotype: RNNGenotype) -> CellFn:
    """The cell of ``genotype`` with ``params``: one step gives ``h_t (B, H)`` (module
    docstring)."""

    def cell(x, h, x_mask, h_mask):
        states = {0: init_state(params["w0"], x, h, x_mask, h_mask)}
        for i, pairs in enumerate(genotype.nodes, start=1):
            if not pairs:
                continue
            w = params["ws"][str(i)]
            gates = {j: _gate(states[j], w, h_mask) for j in dict.fromkeys(j for _, j in pairs)}
            outs = [
                states[j] + gates[j][0] * (ACTIVATIONS[f](gates[j][1]) - states[j])
                for f, j in pairs
            ]
            states[i] = outs[0] if len(outs) == 1 else jnp.mean(jnp.stack(outs), axis=0)
        return jnp.mean(jnp.stack([states[c] for c in genotype.concat]), axis=0)

    return cell


# ---------------------------------------------------------------------------- dropout


def variational_mask(rng: jax.Array, shape: tuple[int, ...], p: float) -> jax.Array:
    """``Bernoulli(1 - p) / (1 - p)`` of ``shape`` (ones when ``p == 0``); used once per
    sequence, so every time step sees the same mask."""
    if p == 0.0:
        return jnp.ones(shape, jnp.float32)
    keep = jax.random.bernoulli(rng, 1.0 - p, shape)
    return keep.astype(jnp.float32) / (1.0 - p)


def lm_forward(
    params: dict,
    cell: CellFn,
    tokens: jax.Array,
    hidden: jax.Array,
    length: jax.Array,
    *,
    dropouts: Dropouts,
    rng: jax.Array | None,
    train: bool,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Run the language model over a padded window.

    Args:
      params: ``embedding``, ``bias``, ``w0`` and the cell's ``ws``.
      cell: ``cell(x_t, h, x_mask, h_mask) -> h_t`` (:func:`supernet_cell`,
        :func:`discrete_cell`).
      tokens: int ``(B, T)``; positions ``>= length`` are padding.
      hidden: ``(B, H)``, the state before the window.
      length: int scalar, the window's true length (``<= T``).
      dropouts: drop probabilities (used only when ``train``).
      rng: a PRNG key (typed or raw ``uint32`` data) for the masks (``train`` only).

    Returns:
      ``(logits (B, T, V), hidden after position length - 1 (B, H), raw outputs (B, T, H))``.
    """
    emb_w = params["embedding"]
    vocab, size = emb_w.shape
    batch, steps = tokens.shape
    d = dropouts if train else Dropouts()
    if train and rng is not None and not jnp.issubdtype(rng.dtype, jax.dtypes.prng_key):
        rng = jax.random.wrap_key_data(rng)
    keys = jax.random.split(rng, 5) if train and rng is not None else [None] * 5
    if train and rng is None and d != Dropouts():
        raise ValueError("lm_forward: dropout in training mode needs an rng")
    # embedding dropout: whole words, the same word dropped at every position (AWD-LSTM)
    word_mask = variational_mask(keys[0], (vocab, 1), d.embedding)
    emb = (emb_w * word_mask)[tokens]  # (B, T, E)
    emb = emb * variational_mask(keys[1], (batch, 1, size), d.input)
    x_mask = variational_mask(keys[2], (batch, size), d.x)
    h_mask = variational_mask(keys[3], (batch, size), d.hidden)

    def body(h, inp):
        x_t, t = inp
        h_new = cell(x_t, h, x_mask, h_mask)
        return jnp.where(t < length, h_new, h), h_new

    h_last, outs = jax.lax.scan(body, hidden, (jnp.swapaxes(emb, 0, 1), jnp.arange(steps)))
    raw = jnp.swapaxes(outs, 0, 1)  # (B, T, H)
    out = raw * variational_mask(keys[4], (batch, 1, size), d.output)
    logits = out @ emb_w.T + params["bias"]  # decoder tied to the (undropped) embedding
    return logits, h_last, raw


def lm_loss(
    logits: jax.Array,
    targets: jax.Array,
    length: jax.Array,
    raw: jax.Array | None = None,
    tar_beta: float = 0.0,
) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    """Mean NLL over the ``length`` real positions (+ AWD's temporal activation
    regularisation ``tar_beta * mean (h_t - h_{t-1})^2`` on the raw outputs).

    Returns ``(loss, (nll_sum, count))`` -- perplexity is ``exp(sum nll_sum / sum count)``.
    """
    steps = targets.shape[1]
    valid = (jnp.arange(steps) < length).astype(logits.dtype)  # (T,)
    logp = jax.nn.log_softmax(logits, axis=-1)
    nll = -jnp.take_along_axis(logp, targets[..., None], axis=-1)[..., 0]  # (B, T)
    nll_sum = jnp.sum(nll * valid)
    count = valid.sum() * targets.shape[0]
    loss = nll_sum / count
    if raw is not None and tar_beta:
        pair = valid[1:] * valid[:-1]  # both ends real
        diff = jnp.square(raw[:, 1:] - raw[:, :-1]) * pair[None, :, None]
        loss = loss + tar_beta * diff.sum() / jnp.maximum(
            pair.sum() * raw.shape[0] * raw.shape[2], 1
        )
    return loss, (nll_sum, count)


def supernet_arch_for(genotype: RNNGenotype, ops: Sequence[str] = RNN_OPS) -> np.ndarray:
    """The ``A (36, n_ops)`` whose search cell (no BN) computes ``genotype``'s discrete
    cell when every node is kept: ``1/k`` on each of a node's ``k`` pairs."""
    a = np.zeros((genotype.steps * (genotype.steps + 1) // 2, len(ops)), np.float64)
    for i, pairs in enumerate(genotype.nodes, start=1):
        for f, j in pairs:
            a[edge_index(i, j), list(ops).index(f)] += 1.0 / len(pairs)
    return a
