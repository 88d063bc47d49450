"""The recurrent loops' runtime: signal checkpoints and bit-exact resume, TensorBoard,
the drawing of a recurrent cell, ``jaxnas eval`` / ``jaxnas plot`` on RNN workdirs."""

from __future__ import annotations

import glob
import json
import os
import signal
import struct
import subprocess
import sys

import numpy as np
import pytest

from jaxnas.config import load_config
from jaxnas.loop import locate_step
from jaxnas.rnn import DARTS_V2, RNN_OPS, RNNGenotype, derive_rnn, edge_index
from jaxnas.rnn.draw import H_IN, X_IN, cell_graph, plot_recurrent_cell, save_pictures
from jaxnas.runtime import Interrupted, RunError

ROOT = os.path.dirname(os.path.dirname(__file__))
EVAL_TINY = os.path.join(ROOT, "configs", "eval_rnn_tiny.py")
SEARCH_TINY = os.path.join(ROOT, "configs", "sparsenas_rnn_tiny.py")
# the smallest retraining that still has ~10 windows per epoch on tests/data/tiny_ptb
TRAIN_OVER = ["model.size=8", "train.epochs=3", "run.log_every_steps=4"]


def _train_config(*extra):
    return load_config(EVAL_TINY, [*TRAIN_OVER, *extra])


def _read_events(tb_dir) -> dict[str, list[tuple[int, float]]]:
    """Scalars of the TFRecord event files under ``tb_dir``: ``{tag: [(step, value)]}``.

    Each record is ``uint64 length, uint32 crc, payload, uint32 crc`` (TFRecord), the
    payload a serialised ``Event`` proto (tensorboardX ships its definition)."""
    from tensorboardX.proto import event_pb2

    out: dict[str, list[tuple[int, float]]] = {}
    for path in sorted(glob.glob(os.path.join(tb_dir, "events.out.tfevents.*"))):
        data = open(path, "rb").read()
        i = 0
        while i < len(data):
            (n,) = struct.unpack("<Q", data[i : i + 8])
            event = event_pb2.Event.FromString(data[i + 12 : i + 12 + n])
            i += 12 + n + 4
            for v in event.summary.value:
                out.setdefault(v.tag, []).append((event.step, v.simple_value))
    return out


def _ckpt_params(folder, step):
    import jax
    import orbax.checkpoint as ocp

    with ocp.CheckpointManager(folder) as m:
        restored = m.restore(step)
    return [np.asarray(a) for a in jax.tree.leaves(restored)]


def _records(workdir, kind=None):
    """``metrics.jsonl`` without the wall times."""
    lines = open(os.path.join(workdir, "metrics.jsonl")).read().splitlines()
    records = [{k: v for k, v in r.items() if k != "time"} for r in map(json.loads, lines)]
    return [r for r in records if kind in (None, r["kind"])]


# ------------------------------------------------------------------------------ helpers


def test_locate_step_inverts_the_cumulative_window_counts():
    counts = [3, 5, 4, 6]
    bounds = np.cumsum([0, *counts])
    for step in range(int(bounds[-1])):
        epoch, skip = locate_step(step, lambda e: counts[e])
        assert bounds[epoch] + skip == step and 0 <= skip < counts[epoch]
    assert locate_step(8, lambda e: counts[e]) == (2, 0)  # a finished epoch: the next one
    with pytest.raises(ValueError, match="no steps"):
        locate_step(1, lambda e: 0)


# ------------------------------------------------------------------------------ drawing


MIXED = RNNGenotype(
    nodes=(
        (("tanh", 0), ("relu", 0)),  # one edge, two ops
        (),  # dropped
        (("identity", 1), ("sigmoid", 0)),  # two edges
        (("relu", 3), ("tanh", 1), ("relu", 1)),
    ),
    concat=(1, 3, 4),
)


@pytest.mark.parametrize(
    "genotype",
    [DARTS_V2, MIXED, RNNGenotype(nodes=((), (), ()), concat=(0,))],
    ids=["darts_v2", "mixed", "all_dropped"],
)
def test_cell_graph_has_the_genotypes_nodes_and_labels(genotype):
    g = cell_graph(genotype)
    kept = [i for i, pairs in enumerate(genotype.nodes, start=1) if pairs]
    assert g.states == (0, *kept)  # one node per surviving state, dropped ones left out
    pairs = sorted((j, i, op) for i, ps in enumerate(genotype.nodes, start=1) for op, j in ps)
    assert sorted(g.labels) == pairs  # one label per (edge, op), nothing else
    assert len({(j, i) for j, i, _ in g.edges}) == len(g.edges)  # one arrow per edge
    assert set(g.inputs) == {(X_IN, 0), (H_IN, 0)} and g.output == genotype.concat
    assert all(j in g.states and i in g.states for j, i, _ in g.edges)


def test_cell_graph_of_a_derived_sparse_cell():
    th = np.zeros((36, 4))
    th[edge_index(1, 0), RNN_OPS.index("tanh")] = 0.5
    th[edge_index(1, 0), RNN_OPS.index("relu")] = -0.7
    th[edge_index(2, 1), RNN_OPS.index("sigmoid")] = 0.3
    th[edge_index(4, 3), RNN_OPS.index("tanh")] = 0.9  # reads the dead node 3: dropped
    th[edge_index(5, 0), RNN_OPS.index("identity")] = 0.2
    th[edge_index(5, 2), RNN_OPS.index("relu")] = 0.1
    g = cell_graph(derive_rnn(th))
    assert g.states == (0, 1, 2, 5) and g.output == (1, 2, 5)
    assert sorted(g.labels) == [
        (0, 1, "relu"),
        (0, 1, "tanh"),
        (0, 5, "identity"),
        (1, 2, "sigmoid"),
        (2, 5, "relu"),
    ]
    assert dict(((j, i), ops) for j, i, ops in g.edges)[(0, 1)] == ("relu", "tanh")  # |theta|


def test_drawing_writes_png_and_svg(tmp_path):
    written = save_pictures(MIXED, tmp_path / "g")
    assert written == [str(tmp_path / "g_recurrent.png"), str(tmp_path / "g_recurrent.svg")]
    assert open(written[0], "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    svg = open(written[1]).read()
    # the SVG keeps text as glyph paths; the op names survive as the text's comments
    for op in ("tanh", "relu", "identity", "sigmoid"):
        assert op in svg
    assert plot_recurrent_cell(DARTS_V2, tmp_path / "sub" / "v2.png") == str(
        tmp_path / "sub" / "v2.png"
    )


# -------------------------------------------------------------------- retraining runtime


@pytest.mark.slow
def test_train_rnn_sigterm_resume_is_bit_exact(tmp_path, monkeypatch):
    """A: 3 epochs straight. B: SIGTERM mid-epoch 2 (checkpoint at that step), resumed;
    SIGTERM again at epoch 2's last window (the epoch is finished first), resumed. The
    ASGD trigger is forced to fire at its first chance (after epoch 2: it needs one
    earlier loss), so the resumed runs carry the switch and the average. Same
    checkpoints, validation perplexities and test perplexity, bit for bit."""
    from jaxnas import train_rnn

    monkeypatch.setattr(train_rnn, "nonmono_switch", lambda history, val, n: len(history) >= 1)
    cfg = _train_config("run.tensorboard=true")
    a = train_rnn.train(cfg, tmp_path / "a", progress=False)
    assert a["asgd_epoch"] == 2
    ends = [r["step"] for r in _records(tmp_path / "a", "epoch")]
    mid = ends[0] + (ends[1] - ends[0]) // 2

    def kill_at(target):
        def on_step(epoch, step):
            if step == target:
                os.kill(os.getpid(), signal.SIGTERM)

        return on_step

    wb = tmp_path / "b"
    handler = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Interrupted, match=f"at step {mid} .*--resume"):
        train_rnn.train(cfg, wb, progress=False, on_step=kill_at(mid))
    with pytest.raises(RunError, match="--resume"):
        train_rnn.train(cfg, wb, progress=False)
    with pytest.raises(Interrupted, match="after epoch 2"):
        train_rnn.train(cfg, wb, resume=True, progress=False, on_step=kill_at(ends[1]))
    assert signal.getsignal(signal.SIGTERM) is handler  # the handler is restored
    b = train_rnn.train(cfg, wb, resume=True, progress=False)

    steps = sorted(int(s) for s in os.listdir(wb / "checkpoints") if s.isdigit())
    assert steps == [mid, ends[1], ends[2]]  # run.checkpoint_keep = 3
    for x, y in zip(_ckpt_params(tmp_path / "a" / "checkpoints", ends[2]),
                    _ckpt_params(wb / "checkpoints", ends[2])):  # fmt: skip
        np.testing.assert_array_equal(x, y)
    ra, rb = _records(tmp_path / "a"), _records(wb)
    # every record (epoch and logging window) once, equal but for the wall time: the
    # signal kept the cut epoch's step metrics for the resume (pending_metrics.json)
    assert rb == ra
    assert [r["epoch"] for r in rb if r["kind"] == "epoch"] == [1, 2, 3]
    assert [r["asgd"] for r in rb if r["kind"] == "epoch"] == [False, True, True]
    assert b["test_ppl"] == a["test_ppl"] and b["best"] == a["best"]
    assert b["asgd_epoch"] == a["asgd_epoch"] == 2
    assert json.load(open(wb / "best.json")) == a["best"]

    # TensorBoard: the epoch scalars at the epoch-end steps, the switch once
    tags = _read_events(tmp_path / "a" / "tb")
    for tag in ("train/loss", "train/ppl", "valid/loss", "valid/ppl", "lr", "asgd"):
        assert [s for s, _ in tags[tag]] == ends, tag
    np.testing.assert_allclose(
        [v for _, v in tags["valid/ppl"]],
        [r["valid/ppl"] for r in ra if "valid/ppl" in r],
        rtol=1e-6,
    )
    assert tags["asgd_switch_epoch"] == [(ends[1], 2.0)]
    assert [s for s, _ in tags["step/train/loss"]] == [s for s in range(4, ends[2] + 1, 4)]
    # the interrupted and resumed runs' events: every epoch and logging window once, with
    # the same values (each checkpoint came after its step's scalars: nothing to purge)
    tb = _read_events(wb / "tb")
    for tag in ("valid/ppl", "train/loss", "step/train/loss"):
        assert tb[tag] == tags[tag], tag


@pytest.mark.slow
def test_cli_eval_and_plot_on_rnn_workdirs(tmp_path, capsys):
    """`jaxnas eval` of a train_rnn workdir reproduces the test perplexity the run
    reported; `jaxnas plot` redraws an RNN search's and retraining's pictures; a workdir
    of neither kind is a one-line error."""
    from jaxnas import cli

    wd = tmp_path / "train"
    over = [f"--set={x}" for x in [*TRAIN_OVER, "train.epochs=2", "run.tensorboard=false"]]
    argv = ["train", "--config", EVAL_TINY, "--workdir", str(wd), *over, "--no-progress"]
    assert cli.main(argv) == 0
    summary = json.load(open(wd / "summary.json"))
    capsys.readouterr()
    assert cli.main(["eval", "--checkpoint", str(wd), "--json"]) == 0
    ev = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert ev["test/ppl"] == pytest.approx(summary["test_ppl"], rel=1e-12)
    assert ev["test/loss"] == pytest.approx(np.log(summary["test_ppl"]), rel=1e-12)
    assert ev["valid/ppl"] == pytest.approx(summary["best"]["value"], rel=1e-12)
    assert ev["checkpoint"].endswith(os.path.join("best", str(summary["best"]["step"])))
    last = summary["final"]["step"]
    assert cli.main(["eval", "--checkpoint", str(wd), "--which", "latest"]) == 0
    out = capsys.readouterr().out
    assert "test perplexity" in out and f"checkpoints/{last}" in out
    assert json.load(open(wd / "eval.json"))["step"] == last

    for f in ("curves.png", "genotype_recurrent.png"):
        os.remove(wd / f)
    assert cli.main(["plot", "--workdir", str(wd)]) == 0
    assert (wd / "curves.png").exists() and (wd / "genotype_recurrent.svg").exists()

    sd = tmp_path / "search"
    search_over = ["search.epochs=1", "search.order=first", "model.steps=3", "model.size=8"]
    argv = ["search", "--config", SEARCH_TINY, "--workdir", str(sd), "--no-progress"]
    assert cli.main([*argv, *[f"--set={x}" for x in search_over]]) == 0
    assert (sd / "genotype_recurrent.png").exists()
    for f in ("alphas.png", "curves.png", "genotype_recurrent.png"):
        os.remove(sd / f)
    capsys.readouterr()
    assert cli.main(["plot", "--workdir", str(sd)]) == 0
    printed = capsys.readouterr().out
    for f in ("alphas.png", "curves.png", "genotype_recurrent.png"):
        assert (sd / f).exists() and f in printed
    # a search workdir is not evaluable; a folder without config.json is neither kind
    assert cli.main(["eval", "--checkpoint", str(sd)]) == 2
    assert "sparsenas_rnn" in capsys.readouterr().err
    assert cli.main(["eval", "--checkpoint", str(tmp_path)]) == 2
    assert "neither" in capsys.readouterr().err


# ------------------------------------------------------------------ data-parallel search


@pytest.fixture(scope="module")
def rnn_on_two_devices(tmp_path_factory):
    """tests/_rnn_dist.py's outputs (one subprocess with 2 forced host devices)."""
    out = tmp_path_factory.mktemp("rnn_dist")
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=2"
    worker = os.path.join(os.path.dirname(__file__), "_rnn_dist.py")
    p = subprocess.run(
        [sys.executable, worker, str(out)], env=env, capture_output=True, text=True, timeout=1200
    )
    assert p.returncode == 0, (p.stdout + p.stderr)[-3000:]
    assert "stopped" in p.stdout
    return out


@pytest.mark.slow
def test_two_devices_rnn_step_as_one(rnn_on_two_devices):
    """Two SparseNAS RNN steps (exact hypergradient) on 2 devices, hidden states split
    with the windows' rows, equal the 1-device steps on the same global batch: every
    leaf to float32 round-off relative to what the steps changed; integers exactly;
    the evaluation's NLL sum, token count and hidden state too."""
    r = np.load(rnn_on_two_devices / "steps.npz")
    leaves = sorted({k.split("/")[0] for k in r.files if "/" in k})
    assert len(leaves) > 10
    moved_any = 0.0
    for k in leaves:
        a, b, c = (r[f"{k}/{s}"] for s in ("s0", "s1", "s2"))
        assert b.shape == c.shape and b.dtype == c.dtype, k
        if not np.issubdtype(b.dtype, np.floating):
            np.testing.assert_array_equal(c, b, err_msg=k)
            continue
        moved = float(np.max(np.abs(b - a), initial=0.0))
        moved_any = max(moved_any, moved)
        tol = 1e-3 * moved + 1e-6 * float(np.max(np.abs(b), initial=0.0))
        np.testing.assert_allclose(c, b, rtol=0, atol=tol, err_msg=k)
    assert moved_any > 0
    np.testing.assert_allclose(r["eval2"], r["eval1"], rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_rnn_search_moves_between_device_counts(rnn_on_two_devices):
    """The tiny recurrent search on 2 devices, stopped in epoch 2 and resumed on 1,
    ends where the uninterrupted 1-device search ends: theta after each epoch (to
    round-off relative to the epoch's change) and the genotype; the log names the
    global batch and the device count of each part."""
    a, b = rnn_on_two_devices / "straight", rnn_on_two_devices / "moved"
    log = (b / "log.txt").read_text()
    assert "global batch 8 on 2 device(s)" in log and "global batch 8 on 1 device(s)" in log

    def theta(wd, epoch):
        with np.load(wd / "alphas" / f"epoch_{epoch:03d}.npz") as f:
            return f["recurrent"]

    for epoch in (1, 2):
        x, y, x0 = theta(a, epoch), theta(b, epoch), theta(a, epoch - 1)
        moved = float(np.max(np.abs(x - x0)))
        assert moved > 0
        np.testing.assert_allclose(y, x, rtol=0, atol=1e-3 * moved + 1e-7)
    assert np.any(theta(a, 2) != 0) and np.any(theta(a, 2) == 0)
    assert (a / "genotype.json").read_text() == (b / "genotype.json").read_text()
