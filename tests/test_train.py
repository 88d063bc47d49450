"""Retraining: schedules, losses, evaluation batches, data parallelism, checkpoints, CLI."""

import json
import os
import signal
import socket
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _train_dist import GENOTYPE as CHEAP  # pools and skips: quick to compile

from jaxnas import cli
from jaxnas.common import lr_schedule, smoothed_cross_entropy
from jaxnas.config import default_config
from jaxnas.data import ArrayDataset, eval_batches
from jaxnas.genotype import DARTS_V2, CellGenotype, Genotype, GenotypeError
from jaxnas.runtime import RunError
from jaxnas.train import (
    Interrupted,
    Trainer,
    TrainState,
    train,
)

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, "_train_dist.py")


def tiny_config(**train_keys):
    """DARTS_V2 at C=4 with 3 cells on 512 Fashion-MNIST images, batch 32."""
    c = default_config("train")
    c.data.dataset = "fashion_mnist"
    c.data.batch_size = 32
    c.data.limit = 512
    c.data.crop_padding = 2
    c.data.flip = True
    c.model.init_channels = 4
    c.model.layers = 3
    c.model.drop_path_prob = 0.2
    c.train.epochs = 2
    c.run.log_every_steps = 4
    c.run.eval_limit = 96
    c.run.tensorboard = False
    for k, v in train_keys.items():
        section, key = k.split("__")
        c[section][key] = v
    return c


# ------------------------------------------------------------------------ pure pieces


def test_lr_schedules_are_the_reference_per_epoch_values():
    spe, epochs = 7, 10
    cos = lr_schedule(dict(lr=0.025, schedule="cosine", lr_min=0.001), epochs, spe)
    for e in (0, 3, 10):
        want = 0.001 + 0.5 * (0.025 - 0.001) * (1 + np.cos(np.pi * e / epochs))
        for t in (e * spe, e * spe + spe - 1):  # constant within the epoch
            np.testing.assert_allclose(cos(jnp.int32(t)), want, rtol=1e-6)
    exp = lr_schedule(dict(lr=0.1, schedule="exponential", decay_rate=0.97), 250, spe)
    for e in (0, 1, 100):
        np.testing.assert_allclose(exp(jnp.int32(e * spe + 3)), 0.1 * 0.97**e, rtol=1e-5)
    with pytest.raises(ValueError, match="optim.schedule"):
        lr_schedule(dict(lr=0.1, schedule="step"), 1, 1)


def test_label_smoothing_is_darts_cross_entropy_label_smooth():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(6, 5)).astype(np.float32)
    labels = rng.integers(0, 5, 6)
    eps = 0.1
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    target = (1 - eps) * np.eye(5)[labels] + eps / 5
    want = -(target * logp).sum(-1).mean()
    np.testing.assert_allclose(smoothed_cross_entropy(logits, labels, eps), want, rtol=1e-5)
    plain = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    np.testing.assert_allclose(smoothed_cross_entropy(logits, labels, 0.0), plain, rtol=1e-6)


def test_eval_batches_cover_each_example_once_with_a_masked_tail():
    images = np.arange(10, dtype=np.uint8).reshape(10, 1, 1, 1).repeat(2, 1).repeat(2, 2)
    ds = ArrayDataset(images, np.arange(10, dtype=np.int32) % 3, 3, "fashion_mnist")
    batches = list(eval_batches(ds, 4))
    assert [b[0].shape for b in batches] == [(4, 2, 2, 1)] * 3  # one static shape
    mask = np.concatenate([b[2] for b in batches])
    labels = np.concatenate([b[1] for b in batches])
    np.testing.assert_array_equal(mask, [1] * 10 + [0] * 2)
    np.testing.assert_array_equal(labels[:10], np.arange(10) % 3)
    assert sum(len(b[1]) for b in eval_batches(ds, 4, limit=6)) == 8
    assert np.concatenate([b[2] for b in eval_batches(ds, 4, limit=6)]).sum() == 6


def test_drop_path_probability_ramps_linearly_over_epochs():
    t = Trainer(
        tiny_config(train__epochs=4),
        DARTS_V2,
        num_classes=10,
        input_shape=(28, 28, 1),
        steps_per_epoch=5,
    )
    got = [float(t.drop_prob(jnp.int32(s))) for s in (0, 4, 5, 14, 19)]
    np.testing.assert_allclose(got, [0.0, 0.0, 0.05, 0.1, 0.15], rtol=1e-6)


def test_eval_step_counts_top1_and_top5_under_the_mask():
    """The eval step of a Trainer whose network returns fixed logits: the label of row
    i has rank i % 7, so top-1 and top-5 hits are known."""
    import flax.linen as nn

    logits = np.random.default_rng(1).normal(size=(8, 10)).astype(np.float32)

    class FixedLogits(nn.Module):
        @nn.compact
        def __call__(self, x, train=False):
            return self.param("logits", lambda _: jnp.asarray(logits)), None

    t = Trainer(tiny_config(), DARTS_V2, num_classes=10, input_shape=(28, 28, 1), steps_per_epoch=1)
    t.model = FixedLogits()
    state = TrainState(jnp.int32(0), {"logits": jnp.asarray(logits)}, {}, (), jnp.zeros(2))
    order = np.argsort(-logits, axis=-1)
    ranks = np.arange(8) % 7
    labels = order[np.arange(8), ranks].astype(np.int32)
    mask = np.array([1, 1, 1, 1, 1, 1, 0, 1], np.float32)
    x = np.zeros((8, 28, 28, 1), np.float32)
    s = jax.device_get(t.eval_step(state, (x, labels, mask)))
    assert s["count"] == 7
    assert s["top1"] == np.sum((ranks == 0) * mask)
    assert s["top5"] == np.sum((ranks < 5) * mask)
    want = optax.softmax_cross_entropy_with_integer_labels(logits, labels) * mask
    np.testing.assert_allclose(s["loss"], want.sum(), rtol=1e-5)
    # evaluate adds the sums of its batches and divides by the rows (the second one has 8)
    full = np.ones(8, np.float32)
    m = t.evaluate(state, [(x, labels, mask), (x, labels, full)])
    assert m["examples"] == 15
    assert m["accuracy"] == (np.sum((ranks == 0) * mask) + np.sum(ranks == 0)) / 15
    assert m["top5"] == (np.sum((ranks < 5) * mask) + np.sum(ranks < 5)) / 15
    per_row = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    np.testing.assert_allclose(m["loss"], (want.sum() + per_row.sum()) / 15, rtol=1e-5)


# ------------------------------------------------------------------------ bad input


def test_bad_input_is_a_one_line_error(tmp_path):
    with pytest.raises(RunError, match="only 1 CPU device"):
        train(tiny_config(train__num_devices=5), tmp_path / "a", progress=False)
    with pytest.raises(RunError, match="divisible by train.accumulate"):
        train(tiny_config(train__accumulate=3), tmp_path / "b", progress=False)
    nodes = ((("conv_9x9", 0), ("skip_connect", 1)),) + DARTS_V2.normal.nodes[1:]
    bad = Genotype(normal=CellGenotype(nodes, DARTS_V2.normal.concat), reduce=DARTS_V2.reduce)
    with pytest.raises((GenotypeError, ValueError), match="conv_9x9"):
        train(tiny_config(), tmp_path / "c", genotype=bad, progress=False)
    with pytest.raises(GenotypeError, match="unknown genotype"):
        train(tiny_config(), tmp_path / "d", genotype="NO_SUCH_NET", progress=False)
    search_config = default_config("darts")
    with pytest.raises(RunError, match="method='train'"):
        train(search_config, tmp_path / "e", progress=False)
    assert cli.main(["train", "--config", "nope.py", "--workdir", str(tmp_path / "f")]) == 2
    for d in "abcd":  # nothing half-written became a checkpoint
        assert not os.listdir(tmp_path / d / "checkpoints") if (tmp_path / d).exists() else True


# ------------------------------------------------------------------------ end to end


def _params(workdir, step):
    import orbax.checkpoint as ocp

    with ocp.CheckpointManager(os.path.join(workdir, "checkpoints")) as m:
        restored = m.restore(step)
    return np.concatenate([np.ravel(a) for a in jax.tree.leaves(restored["params"])])


@pytest.mark.slow
def test_sigterm_then_resume_continues_bit_for_bit(tmp_path):
    """Run A: 2 epochs. Run B: SIGTERM in the middle of epoch 2 (a checkpoint at that
    step, `Interrupted`), then resume. Same final weights and test accuracy, bit for bit."""
    cfg = tiny_config()
    cfg.model.genotype = "/dev/null"  # the genotype argument wins
    a = train(cfg, tmp_path / "a", genotype=CHEAP, progress=False)
    spe = a["steps_per_epoch"]
    kill_at = spe + spe // 2

    def on_step(epoch, step):
        if step == kill_at:
            os.kill(os.getpid(), signal.SIGTERM)

    with pytest.raises(Interrupted, match="--resume"):
        train(cfg, tmp_path / "b", genotype=CHEAP, progress=False, on_step=on_step)
    with pytest.raises(RunError, match="--resume"):
        train(cfg, tmp_path / "b", genotype=CHEAP, progress=False)
    b = train(cfg, tmp_path / "b", resume=True, progress=False)  # reads b/genotype.json
    assert b["final"]["test/accuracy"] == a["final"]["test/accuracy"]
    end = 2 * spe
    np.testing.assert_array_equal(_params(tmp_path / "a", end), _params(tmp_path / "b", end))
    steps = sorted(int(s) for s in os.listdir(tmp_path / "b" / "checkpoints") if s.isdigit())
    assert steps == [spe, kill_at, end]
    # the metrics have one epoch record per epoch, none duplicated by the resume
    recs = [json.loads(line) for line in open(tmp_path / "b" / "metrics.jsonl")]
    assert [r["epoch"] for r in recs if r["kind"] == "epoch"] == [1, 2]
    best = json.load(open(tmp_path / "b" / "best.json"))
    assert best["metric"] == "test/accuracy"
    assert best["value"] == max(r["test/accuracy"] for r in recs if r["kind"] == "epoch")
    # a checkpoint of another architecture is refused in one line
    wider = tiny_config(model__init_channels=6)
    with pytest.raises(RunError, match="does not match"):
        train(wider, tmp_path / "b", resume=True, progress=False)
    with pytest.raises(RunError, match="differs from the one this run trained"):
        train(cfg, tmp_path / "b", genotype=DARTS_V2, resume=True, progress=False)

    # a SIGTERM at the last step of epoch 1: the epoch finishes (test evaluation, record,
    # checkpoint), then the run stops; the resume starts epoch 2 and ends the same
    def at_epoch_end(epoch, step):
        if step == spe:
            os.kill(os.getpid(), signal.SIGTERM)

    with pytest.raises(Interrupted, match="after epoch 1"):
        train(cfg, tmp_path / "c", genotype=CHEAP, progress=False, on_step=at_epoch_end)
    recs = [json.loads(line) for line in open(tmp_path / "c" / "metrics.jsonl")]
    assert [r["epoch"] for r in recs if r["kind"] == "epoch"] == [1]
    assert "test/accuracy" in recs[-1]
    c = train(cfg, tmp_path / "c", resume=True, progress=False)
    assert c["final"]["test/accuracy"] == a["final"]["test/accuracy"]
    np.testing.assert_array_equal(_params(tmp_path / "a", end), _params(tmp_path / "c", end))
    recs = [json.loads(line) for line in open(tmp_path / "c" / "metrics.jsonl")]
    assert [r["epoch"] for r in recs if r["kind"] == "epoch"] == [1, 2]


@pytest.mark.slow
def test_cli_train_then_eval_reports_the_same_test_accuracy(tmp_path, capsys, monkeypatch):
    cfg_file = tmp_path / "tiny.py"
    cfg_file.write_text(
        "from jaxnas.config import default_config\n"
        "def get_config():\n"
        "    c = default_config('train')\n"
        "    c.data.batch_size = 32\n"
        "    c.data.limit = 256\n"
        "    c.model.init_channels = 4\n"
        "    c.model.layers = 3\n"
        "    c.train.epochs = 1\n"
        "    c.run.eval_limit = 100\n"
        "    c.run.tensorboard = False\n"
        "    return c\n"
    )
    wd = tmp_path / "run"
    argv = ["train", "--config", str(cfg_file), "--genotype", "DARTS_V1", "--workdir", str(wd)]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "parameters" in out and "top-1" in out
    summary = json.load(open(wd / "summary.json"))
    assert summary["final"]["test/examples"] == 100
    assert json.load(open(wd / "genotype.json"))  # the trained genotype travels with the run
    assert os.path.exists(wd / "curves.png")
    assert cli.main(["eval", "--checkpoint", str(wd), "--json"]) == 0
    ev = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert ev["test/accuracy"] == pytest.approx(summary["final"]["test/accuracy"], abs=1e-6)
    assert ev["examples"] == 100
    assert ev["params"] == summary["params"]
    # a search config is refused by `jaxnas train`, a train workdir's checkpoint by `eval`
    assert cli.main(["eval", "--checkpoint", str(tmp_path)]) == 2
    assert "neither a train workdir" in capsys.readouterr().err


def _free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _run(args, env, **kw):
    return subprocess.Popen(
        [sys.executable, WORKER, *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        **kw,
    )


def _env(**extra):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    if "XLA_FLAGS" in extra:  # the run's flags (tests/conftest.py) and the test's
        extra["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {extra['XLA_FLAGS']}"
    env.update(extra)
    return env


@pytest.mark.slow
def test_two_devices_compute_the_one_device_step(tmp_path):
    """Same global batch on 1 and 2 (forced host) devices: same step (synchronised BN,
    global-batch gradients); accumulate=2 over doubled rows: the same step again."""
    out = tmp_path / "dev.npz"
    env = _env(XLA_FLAGS="--xla_force_host_platform_device_count=2")
    p = _run(["devices", str(out)], env)
    log = p.communicate(timeout=600)[0].decode()
    assert p.returncode == 0, log[-3000:]
    r = np.load(out)
    assert int(r["n"]) == 2
    moved = np.linalg.norm(r["p1"] - r["p0"])  # what two steps change
    assert moved > 0.1
    for key in ("p2", "pa"):  # float32 sums in another order: tiny next to the steps
        assert np.linalg.norm(r[key] - r["p1"]) < 1e-4 * moved, key
    np.testing.assert_allclose(r["l2"], r["l1"], rtol=1e-5)
    np.testing.assert_allclose(r["la"], r["l1"], rtol=1e-5)


@pytest.mark.slow
def test_two_processes_train_the_same_steps_as_one(tmp_path):
    """jax.distributed on localhost: two CPU processes of one device each vs one process."""
    port = _free_port()
    procs = []
    for pid in range(2):
        env = _env(
            JAXNAS_COORDINATOR=f"localhost:{port}",
            JAXNAS_NUM_PROCESSES="2",
            JAXNAS_PROCESS_ID=str(pid),
        )
        procs.append(_run(["host", str(tmp_path / "multi.npz")], env))
    single_env = _env(
        JAXNAS_COORDINATOR=f"localhost:{_free_port()}",
        JAXNAS_NUM_PROCESSES="1",
        JAXNAS_PROCESS_ID="0",
    )
    single = _run(["host", str(tmp_path / "single.npz")], single_env)
    logs = [p.communicate(timeout=600)[0].decode() for p in (*procs, single)]
    for p, log in zip((*procs, single), logs):
        assert p.returncode == 0, log[-3000:]
    m, s = np.load(tmp_path / "multi.npz"), np.load(tmp_path / "single.npz")
    assert int(m["procs"]) == 2 and int(m["n"]) == 2 and int(s["n"]) == 1
    moved = np.linalg.norm(s["p"] - s["p0"])
    assert moved > 0.1
    assert np.linalg.norm(m["p"] - s["p"]) < 1e-4 * moved
    np.testing.assert_allclose(m["l"], s["l"], rtol=1e-5)


def test_bfloat16_compute_keeps_float32_weights_and_tracks_the_float32_step():
    """model.dtype=bfloat16: the step runs in bf16, the weights stay float32, and the
    loss is the float32 loss to bf16 precision."""
    x = np.random.default_rng(0).normal(size=(8, 28, 28, 1)).astype(np.float32)
    y = np.arange(8, dtype=np.int32) % 10
    losses = {}
    for dtype in ("float32", "bfloat16"):
        cfg = tiny_config(model__dtype=dtype, model__auxiliary=False)
        cfg.data.batch_size = 8
        t = Trainer(cfg, CHEAP, num_classes=10, input_shape=(28, 28, 1), steps_per_epoch=10)
        state, m = t.train_step(t.init(0), t.shard((x, y)))
        assert {a.dtype for a in jax.tree.leaves(state.params)} == {jnp.dtype(jnp.float32)}
        losses[dtype] = float(m["loss"])
    assert np.isfinite(losses["bfloat16"])
    assert abs(losses["bfloat16"] - losses["float32"]) < 0.05 * losses["float32"]
    assert losses["bfloat16"] != losses["float32"]  # it really computed in bf16


def test_summary_of_a_retraining_config_is_the_papers_network(capsys):
    cfg = os.path.join(HERE, "..", "configs", "eval_imagenet.py")
    assert cli.main(["summary", "--config", cfg, "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert (s["network"], s["init_channels"], s["layers"]) == ("NetworkImageNet", 48, 14)
    assert s["params"] == 4_718_752  # DARTS_V2, the config's genotype
    search_cfg = os.path.join(HERE, "..", "configs", "darts_fmnist_tiny.py")
    assert cli.main(["summary", "--config", search_cfg]) == 2


_KILLED_TRAIN = """
import os, signal, sys
sys.path.insert(0, sys.argv[1])
import orbax.checkpoint as ocp
import test_train as T
from jaxnas.train import train
wd, last = sys.argv[2], int(sys.argv[3])
real_save = ocp.CheckpointManager.save
def save(self, step, *a, **k):  # the best state of step `last` is being written: die
    out = real_save(self, step, *a, **k)
    if step == last and str(self.directory).endswith("best"):
        os.kill(os.getpid(), signal.SIGKILL)
    return out
ocp.CheckpointManager.save = save
train(T.tiny_config(), wd, genotype=T.CHEAP, progress=False)
"""


@pytest.mark.slow
def test_kill_9_while_the_best_state_is_written_then_resume(tmp_path):
    """The case a kill -9 trial found: a retraining killed while a best state was being
    written (the straight run's best epoch). The resume redoes that epoch and ends with the straight
    run's weights, best (value, epoch, step and state) and final record."""
    import subprocess
    import sys

    a = train(tiny_config(), tmp_path / "a", genotype=CHEAP, progress=False)
    end, best_step = 2 * a["steps_per_epoch"], a["best"]["step"]
    tests = os.path.dirname(os.path.abspath(__file__))
    child = subprocess.run(  # dies while writing the best state (the straight run's best)
        [sys.executable, "-c", _KILLED_TRAIN, tests, str(tmp_path / "b"), str(best_step)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]
    b = train(tiny_config(), tmp_path / "b", genotype=CHEAP, progress=False, resume=True)
    assert b["best"] == a["best"] and b["final"]["test/accuracy"] == a["final"]["test/accuracy"]
    np.testing.assert_array_equal(_params(tmp_path / "a", end), _params(tmp_path / "b", end))
    assert os.listdir(tmp_path / "b" / "best") == [str(best_step)]
    recs = [json.loads(line) for line in open(tmp_path / "b" / "metrics.jsonl")]
    assert [r["epoch"] for r in recs if r["kind"] == "epoch"] == [1, 2]
