"""The shared search runner and the CLI, with a tiny stand-in search method.

The stand-in (``ToyMethod``) is a real bi-level search in miniature: a two-cell
"supernet" over flattened images whose cells mix three ops on two edges with
softmax(alpha) (alpha: (2, 3) per cell type), a linear classifier, momentum SGD
with a cosine schedule over ``search.epochs`` for the weights, an alpha gradient
step on the valid batch, input noise drawn from an RNG key kept in the state, and
a genotype derived by the DARTS rule. So determinism and resume tests are about
the same things as for DARTS: data order, RNG in the state, optimiser state and
the learning-rate schedule. The data are the first images of the real
Fashion-MNIST on disk (``apt-get install dataset-fashion-mnist``).
"""

from __future__ import annotations

import functools
import json
import os
import pathlib
import signal

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import struct

from jaxnas import cli, data, plots
from jaxnas import genotype as genotype_lib
from jaxnas.config import default_config
from jaxnas.run import RunError, search
from jaxnas.runtime import Interrupted
from jaxnas.spaces.darts import CellTopology

ROOT = pathlib.Path(__file__).resolve().parents[1]
PRIMITIVES = ("none", "skip_connect", "sep_conv_3x3")
TOPOLOGY = CellTopology(n_inputs=2, n_nodes=1)  # two edges: (0, 2), (1, 2)

needs_fmnist = pytest.mark.skipif(
    not os.path.exists(os.path.join(data.FMNIST_DEFAULT_DIR, "train-images-idx3-ubyte.gz"))
    and not os.environ.get(data.FMNIST_ENV_VAR),
    reason="Fashion-MNIST IDX files missing: apt-get install dataset-fashion-mnist",
)


class ToyState(struct.PyTreeNode):
    w: jax.Array  # (D, K)
    b: jax.Array  # (K,)
    momentum: jax.Array  # (D, K)
    alpha_normal: jax.Array  # (2, 3)
    alpha_reduce: jax.Array  # (2, 3)
    step: jax.Array  # ()
    rng: jax.Array  # PRNG key


def _cell(alpha, x):
    """Two edges from the same input; ops: none (0), identity, tanh."""
    ops = jnp.stack([jnp.zeros_like(x), x, jnp.tanh(2.0 * x)])  # (3, B, D)
    weights = jax.nn.softmax(alpha, axis=-1)  # (2, 3)
    return jnp.einsum("eo,obd->bd", weights, ops) + 0.5 * jnp.einsum("o,obd->bd", weights[1], ops)


def _logits(w, b, an, ar, x):
    h = x.reshape(x.shape[0], -1)
    h = _cell(ar, _cell(an, h))
    return h @ w + b


def _loss(w, b, an, ar, x, y):
    logits = _logits(w, b, an, ar, x)
    loss = -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], 1))
    return loss, jnp.mean(jnp.argmax(logits, -1) == y)


@functools.partial(jax.jit, static_argnames=("total_steps", "nan_at_step"))
def _toy_train_step(state, train_batch, valid_batch, *, total_steps, nan_at_step):
    xw, yw = train_batch
    xa, ya = valid_batch
    # architecture step on the valid batch (first order)
    (va_loss, va_acc), (g_an, g_ar) = jax.value_and_grad(_loss, argnums=(2, 3), has_aux=True)(
        state.w, state.b, state.alpha_normal, state.alpha_reduce, xa, ya
    )
    an = state.alpha_normal - 0.5 * g_an
    ar = state.alpha_reduce - 0.5 * g_ar
    # weight step on the (noisy) train batch, cosine lr over the configured epochs
    rng, key = jax.random.split(state.rng)
    xw = xw + 0.1 * jax.random.normal(key, xw.shape)
    (loss, acc), (g_w, g_b) = jax.value_and_grad(_loss, argnums=(0, 1), has_aux=True)(
        state.w, state.b, an, ar, xw, yw
    )
    lr = 0.05 * 0.5 * (1 + jnp.cos(jnp.pi * state.step / total_steps))
    momentum = 0.9 * state.momentum + g_w
    w = state.w - lr * momentum
    if nan_at_step is not None:
        w = jnp.where(state.step + 1 >= nan_at_step, w * jnp.nan, w)
        loss = jnp.where(state.step + 1 >= nan_at_step, jnp.nan, loss)
    new = state.replace(
        w=w,
        b=state.b - lr * g_b,
        momentum=momentum,
        alpha_normal=an,
        alpha_reduce=ar,
        step=state.step + 1,
        rng=rng,
    )
    metrics = dict(loss=loss, accuracy=acc, valid_loss=va_loss, valid_accuracy=va_acc, lr=lr)
    return new, metrics


@jax.jit
def _toy_eval_step(state, batch):
    loss, acc = _loss(state.w, state.b, state.alpha_normal, state.alpha_reduce, *batch)
    return dict(loss=loss, accuracy=acc)


class ToyMethod:
    """A stand-in ``SearchMethod`` (see the module docstring)."""

    name = "toy"
    primitives = PRIMITIVES
    edge_labels = ("0->2", "1->2")

    def __init__(self, *, total_steps: int, num_classes: int, nan_at_step: int | None = None):
        self.total_steps = total_steps
        self.num_classes = num_classes
        self.nan_at_step = nan_at_step

    def init(self, rng, sample_images):
        d = int(np.prod(sample_images.shape[1:]))
        k_w, k_a, k_rng = jax.random.split(rng, 3)
        return ToyState(
            w=0.01 * jax.random.normal(k_w, (d, self.num_classes)),
            b=jnp.zeros((self.num_classes,)),
            momentum=jnp.zeros((d, self.num_classes)),
            alpha_normal=1e-3 * jax.random.normal(k_a, (2, 3)),
            alpha_reduce=jnp.zeros((2, 3)),
            step=jnp.array(0, jnp.int32),
            rng=k_rng,
        )

    def train_step(self, state, train_batch, valid_batch):
        return _toy_train_step(
            state,
            train_batch,
            valid_batch,
            total_steps=self.total_steps,
            nan_at_step=self.nan_at_step,
        )

    def eval_step(self, state, batch):
        return _toy_eval_step(state, batch)

    def arch_weights(self, state):
        return {
            "normal": np.asarray(jax.nn.softmax(state.alpha_normal, -1)),
            "reduce": np.asarray(jax.nn.softmax(state.alpha_reduce, -1)),
        }

    def genotype(self, state):
        w = self.arch_weights(state)
        return genotype_lib.derive(
            w["normal"], w["reduce"], primitives=PRIMITIVES, topology=TOPOLOGY
        )


def toy_build(config, *, steps_per_epoch, num_classes, input_shape, nan_at_step=None):
    assert len(input_shape) == 3
    return ToyMethod(
        total_steps=steps_per_epoch * config.search.epochs,
        num_classes=num_classes,
        nan_at_step=nan_at_step,
    )


def tiny_config(epochs: int = 3, **data_overrides):
    c = default_config("darts")
    c.search.epochs = epochs
    c.data.dataset = "fashion_mnist"
    c.data.batch_size = 32
    c.data.limit = 256  # 128 + 128 -> 4 steps per epoch
    c.data.crop_padding = 2
    c.data.flip = True
    c.run.log_every_steps = 2
    c.run.eval_limit = 64
    for k, v in data_overrides.items():
        c.data[k] = v
    return c


def _final_arch(workdir, epoch):
    with np.load(os.path.join(workdir, "alphas", f"epoch_{epoch:03d}.npz")) as f:
        return {k: f[k] for k in f.files}


def _epoch_records(workdir):
    return plots.read_metrics(os.path.join(workdir, "metrics.jsonl"))


def _same_arch(a, b):
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


class Kill(KeyboardInterrupt):
    """What a Ctrl-C / kill looks like from inside the loop."""


pytestmark = needs_fmnist


# ----------------------------------------------------------------------------- search


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory):
    """An uninterrupted 3-epoch run, shared by the comparisons below."""
    wd = str(tmp_path_factory.mktemp("straight"))
    summary = search(tiny_config(3), wd, build=toy_build, progress=False)
    return wd, summary


def test_search_writes_everything(straight_run):
    wd, summary = straight_run
    for name in (
        "config.json",
        "log.txt",
        "metrics.jsonl",
        "alphas.png",
        "curves.png",
        "genotype.json",
        "genotype_normal.png",
        "genotype_normal.svg",
        "genotype_reduce.png",
        "summary.json",
        "alphas/meta.json",
    ):
        assert os.path.exists(os.path.join(wd, name)), name
    assert sorted(os.listdir(os.path.join(wd, "alphas"))) == [
        "epoch_000.npz",
        "epoch_001.npz",
        "epoch_002.npz",
        "epoch_003.npz",
        "meta.json",
    ]
    assert any(f.startswith("events") for f in os.listdir(os.path.join(wd, "tb")))
    # keyed by the global step: 4 steps per epoch
    assert sorted(int(s) for s in os.listdir(os.path.join(wd, "checkpoints"))) == [4, 8, 12]

    records = _epoch_records(wd)
    assert [r["epoch"] for r in records] == [1, 2, 3]
    assert [r["step"] for r in records] == [4, 8, 12]
    for key in ("train/loss", "train/accuracy", "valid/loss", "valid/accuracy", "lr", "time"):
        assert key in records[0], key
    assert records[-1]["test/examples"] == 64 and 0 <= records[-1]["test/accuracy"] <= 1
    steps = plots.read_metrics(os.path.join(wd, "metrics.jsonl"), kind="step")
    assert [r["step"] for r in steps] == [2, 4, 6, 8, 10, 12]

    arch = _final_arch(wd, 3)
    assert arch["normal"].shape == (2, 3) and np.allclose(arch["normal"].sum(-1), 1)
    g = genotype_lib.load(os.path.join(wd, "genotype.json"))
    assert str(g) == summary["genotype"]
    with open(os.path.join(wd, "summary.json")) as f:
        on_disk = json.load(f)
    assert on_disk["final"]["epoch"] == 3 and on_disk["method"] == "toy"
    assert summary["final"] == records[-1]
    with open(os.path.join(wd, "config.json")) as f:
        assert json.load(f)["search"]["epochs"] == 3
    log = open(os.path.join(wd, "log.txt")).read()
    assert "epoch 3/3" in log and "genotype =" in log


def test_same_seed_same_result(straight_run, tmp_path):
    wd, summary = straight_run
    again = search(tiny_config(3), str(tmp_path), build=toy_build, progress=False)
    assert _same_arch(_final_arch(wd, 3), _final_arch(str(tmp_path), 3))
    assert again["genotype"] == summary["genotype"]
    a, b = _epoch_records(wd), _epoch_records(str(tmp_path))
    assert [r["train/loss"] for r in a] == [r["train/loss"] for r in b]


def test_other_seed_other_result(straight_run, tmp_path):
    wd, _ = straight_run
    c = tiny_config(3)
    c.seed = 1
    search(c, str(tmp_path), build=toy_build, progress=False)
    assert not _same_arch(_final_arch(wd, 3), _final_arch(str(tmp_path), 3))


@pytest.mark.parametrize(
    "kill", ["after_epoch_1", "mid_epoch_2", "sigterm_mid_epoch_2", "sigterm_after_last_epoch"]
)
def test_resume_after_kill_matches_straight_run(straight_run, tmp_path, kill):
    wd_ref, summary_ref = straight_run
    wd = str(tmp_path)

    def on_epoch_end(done, record):
        if kill == "after_epoch_1" and done == 1:
            raise Kill
        if kill == "sigterm_after_last_epoch" and done == 3:  # after every step was run
            os.kill(os.getpid(), signal.SIGTERM)

    def on_step(epoch, step):
        if kill == "mid_epoch_2" and step == 6:  # 2 steps into epoch 2 (4 steps/epoch)
            raise Kill
        if kill == "sigterm_mid_epoch_2" and step == 6:  # the search stops after this step
            os.kill(os.getpid(), signal.SIGTERM)

    expected = Interrupted if kill.startswith("sigterm") else KeyboardInterrupt
    with pytest.raises(expected):
        search(
            tiny_config(3),
            wd,
            build=toy_build,
            progress=False,
            on_epoch_end=on_epoch_end,
            on_step=on_step,
        )
    kept = sorted(os.listdir(os.path.join(wd, "checkpoints")), key=int)
    expected_kept = {
        "after_epoch_1": ["4"],
        "mid_epoch_2": ["4"],  # a kill saves nothing
        "sigterm_mid_epoch_2": ["4", "6"],  # a signal saves the step it stopped at
        "sigterm_after_last_epoch": ["4", "8", "12"],
    }[kill]
    assert kept == expected_kept
    summary = search(tiny_config(3), wd, build=toy_build, progress=False, resume=True)

    assert _same_arch(_final_arch(wd_ref, 3), _final_arch(wd, 3))
    assert summary["genotype"] == summary_ref["genotype"]
    with (
        open(os.path.join(wd, "genotype.json")) as f1,
        open(os.path.join(wd_ref, "genotype.json")) as f2,
    ):
        assert f1.read() == f2.read()
    ref, got = _epoch_records(wd_ref), _epoch_records(wd)
    assert [r["epoch"] for r in got] == [1, 2, 3]  # no duplicates from the killed epoch
    drop = ("time",)
    assert [{k: v for k, v in r.items() if k not in drop} for r in got] == [
        {k: v for k, v in r.items() if k not in drop} for r in ref
    ]
    steps = plots.read_metrics(os.path.join(wd, "metrics.jsonl"), kind="step")
    assert [r["step"] for r in steps] == [2, 4, 6, 8, 10, 12]


def test_existing_checkpoints_need_resume(straight_run, tmp_path):
    wd = str(tmp_path)
    search(tiny_config(1), wd, build=toy_build, progress=False)
    with pytest.raises(RunError) as e:
        search(tiny_config(1), wd, build=toy_build, progress=False)
    msg = str(e.value)
    assert "\n" not in msg and "--resume" in msg and "fresh" in msg


def test_resume_of_finished_run_is_a_no_op(tmp_path):
    wd = str(tmp_path)
    first = search(tiny_config(1), wd, build=toy_build, progress=False)
    again = search(tiny_config(1), wd, build=toy_build, progress=False, resume=True)
    assert again["genotype"] == first["genotype"]
    assert [r["epoch"] for r in _epoch_records(wd)] == [1]


def test_resume_without_checkpoints_starts_fresh(tmp_path):
    summary = search(tiny_config(1), str(tmp_path), build=toy_build, progress=False, resume=True)
    assert summary["final"]["epoch"] == 1


def test_nan_stops_and_keeps_last_good_checkpoint(tmp_path):
    wd = str(tmp_path)
    build = functools.partial(toy_build, nan_at_step=7)  # epoch 2, step 3 of 4
    with pytest.raises(RunError) as e:
        search(tiny_config(3), wd, build=build, progress=False)
    msg = str(e.value)
    assert "\n" not in msg and "non-finite" in msg and "epoch 2" in msg
    assert "last good checkpoint is step 4" in msg
    assert sorted(os.listdir(os.path.join(wd, "checkpoints"))) == ["4"]
    assert [r["epoch"] for r in _epoch_records(wd)] == [1]
    assert "stopped: RunError: non-finite" in open(os.path.join(wd, "log.txt")).read()
    # the kept checkpoint is finite and resumable (here with a sane method)
    summary = search(tiny_config(3), wd, build=toy_build, progress=False, resume=True)
    assert summary["final"]["epoch"] == 3 and np.isfinite(summary["final"]["train/loss"])


def test_nan_in_state_only_is_caught(tmp_path):
    """A NaN that enters the weights on the epoch's last step shows in no loss yet."""
    wd = str(tmp_path)
    build = functools.partial(toy_build, nan_at_step=4)  # step 4 = last of epoch 1
    c = tiny_config(2)
    c.run.log_every_steps = 0
    with pytest.raises(RunError) as e:
        search(c, wd, build=build, progress=False)
    assert "non-finite" in str(e.value)
    assert not os.path.exists(os.path.join(wd, "checkpoints", "4"))


def test_checkpoint_from_other_config_is_one_line_error(tmp_path):
    wd = str(tmp_path)
    search(tiny_config(1), wd, build=toy_build, progress=False)
    with pytest.raises(RunError) as e:  # 32x32 inputs: w has another shape
        search(tiny_config(2, pad_to=32), wd, build=toy_build, progress=False, resume=True)
    msg = str(e.value)
    assert "\n" not in msg and "does not match" in msg and "(784, 10)" in msg
    # the failed resume changed nothing: the right config still resumes
    with open(os.path.join(wd, "config.json")) as f:
        assert json.load(f)["data"]["pad_to"] == 0
    summary = search(tiny_config(2), wd, build=toy_build, progress=False, resume=True)
    assert summary["final"]["epoch"] == 2


def test_tensorboard_and_test_eval_can_be_off(tmp_path):
    c = tiny_config(1)
    c.run.tensorboard = False
    c.run.eval_test = False
    c.run.log_every_steps = 0
    summary = search(c, str(tmp_path), build=toy_build, progress=True)
    assert not os.path.exists(os.path.join(str(tmp_path), "tb"))
    assert summary["tensorboard"] is None
    assert not any(k.startswith("test/") for k in summary["final"])
    assert plots.read_metrics(os.path.join(str(tmp_path), "metrics.jsonl"), kind="step") == []


def test_unknown_dataset_is_run_error(tmp_path):
    with pytest.raises(RunError) as e:
        search(tiny_config(1, dataset="fashion_mnst"), str(tmp_path), build=toy_build)
    assert "'fashion_mnist'" in str(e.value)


def test_replot_regenerates(straight_run, tmp_path):
    import shutil

    from jaxnas.run import replot

    wd = str(tmp_path / "copy")
    shutil.copytree(straight_run[0], wd)
    for name in ("alphas.png", "curves.png", "genotype_normal.png"):
        os.remove(os.path.join(wd, name))
    out = replot(wd)
    assert os.path.exists(out["alphas"]) and os.path.exists(out["curves"])
    assert os.path.join(wd, "genotype_normal.png") in out["genotype"]
    with pytest.raises(RunError):
        replot(str(tmp_path / "empty_dir_that_does_not_exist"))


# ----------------------------------------------------------------------------- CLI


def _stderr_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith("jaxnas: error:")]
    assert len(errors) == 1, err
    assert "Traceback" not in "\n".join(err)
    return errors[0]


def test_cli_bad_config_key(tmp_path, capsys):
    cfg = tmp_path / "bad.py"
    cfg.write_text("def get_config():\n    return {'search': {'epoch': 1}}\n")
    rc = cli.main(["search", "--config", str(cfg), "--workdir", str(tmp_path / "wd")])
    assert rc == 2
    line = _stderr_line(capsys)
    assert "'search.epoch'" in line and "'search.epochs'" in line and str(cfg) in line


def test_cli_bad_override(tmp_path, capsys):
    rc = cli.main(
        [
            "search",
            "--config",
            str(ROOT / "configs/darts_fmnist_tiny.py"),
            "--workdir",
            str(tmp_path),
            "--set",
            "search.epoch=1",
        ]
    )
    assert rc == 2
    assert "'search.epochs'" in _stderr_line(capsys)


def test_cli_missing_dataset(tmp_path, capsys):
    rc = cli.main(
        [
            "search",
            "--config",
            str(ROOT / "configs/darts_fmnist_tiny.py"),
            "--workdir",
            str(tmp_path / "wd"),
            "--set",
            f"data.data_dir={tmp_path}",
        ]
    )
    assert rc == 2
    assert "dataset-fashion-mnist" in _stderr_line(capsys)


def test_cli_search_and_plot(tmp_path, capsys, monkeypatch):
    import jaxnas.search

    monkeypatch.setattr(jaxnas.search, "build", toy_build, raising=False)
    cfg = tmp_path / "tiny.py"
    cfg.write_text(
        "from jaxnas.config import default_config\n\n\n"
        "def get_config():\n"
        "    c = default_config('darts')\n"
        "    c.search.epochs = 1\n"
        "    c.data.batch_size = 32\n"
        "    c.data.limit = 256\n"
        "    c.run.eval_limit = 64\n"
        "    return c\n"
    )
    wd = str(tmp_path / "wd")
    rc = cli.main(["search", "--config", str(cfg), "--workdir", wd, "--no-progress"])
    out = capsys.readouterr().out
    assert rc == 0
    assert os.path.join(wd, "genotype.json") in out
    assert os.path.join(wd, "genotype_normal.png") in out and "alphas.png" in out
    # again without --resume: one-line error
    rc = cli.main(["search", "--config", str(cfg), "--workdir", wd, "--no-progress"])
    assert rc == 2 and "--resume" in _stderr_line(capsys)
    # plot regenerates from the files
    os.remove(os.path.join(wd, "alphas.png"))
    assert cli.main(["plot", "--workdir", wd]) == 0
    assert os.path.exists(os.path.join(wd, "alphas.png"))
    # a malformed genotype file -> GenotypeError, one line
    with open(os.path.join(wd, "genotype.json"), "w") as f:
        f.write("{not json")
    assert cli.main(["plot", "--workdir", wd]) == 2
    assert "genotype" in _stderr_line(capsys)


def test_cli_usage_errors(capsys):
    assert cli.main([]) == 2
    assert cli.main(["search"]) == 2  # argparse: --config is required
    assert cli.main(["frobnicate"]) == 2


# ----------------------------------------------------------------------------- real DARTS


@pytest.mark.slow
def test_real_darts_resume_matches_straight_run(tmp_path):
    """The real method through the runner: kill after epoch 1 + resume == 2 straight epochs.

    One DARTS instance serves all three runs (same config, so the same schedule), so
    its jitted steps compile once.
    """
    from jaxnas import search as methods

    c = tiny_config(2)
    c.data.batch_size = 16
    c.data.limit = 192  # 96 + 96 -> 6 steps per epoch
    # one (reduction) cell of four cheap ops: what a resume must restore is the whole
    # state (weights, alphas, BN statistics, optimisers, rng, data order), whatever the
    # cells and ops; XLA's compile time, most of this test's time, grows with both
    c.model.layers = 1
    c.model.init_channels = 2
    c.model.primitives = "none,skip_connect,max_pool_3x3,conv_3x3"
    c.run.eval_limit = 32
    cache = {}

    def build(config, **kw):
        key = tuple(sorted(kw.items()))
        if key not in cache:
            cache[key] = methods.build(config, **kw)
        return cache[key]

    straight = search(c, str(tmp_path / "a"), build=build, progress=False)

    def kill(done, record):
        if done == 1:
            raise Kill

    wd = str(tmp_path / "b")
    with pytest.raises(KeyboardInterrupt):
        search(c, wd, build=build, progress=False, on_epoch_end=kill)
    resumed = search(c, wd, build=build, progress=False, resume=True)
    assert len(cache) == 1
    assert _same_arch(_final_arch(str(tmp_path / "a"), 2), _final_arch(wd, 2))
    assert resumed["genotype"] == straight["genotype"]
    assert resumed["final"]["train/loss"] == straight["final"]["train/loss"]
    assert np.isfinite(resumed["final"]["test/accuracy"])


def test_search_turns_off_triton_gemm_unless_the_user_chose(tmp_path, monkeypatch):
    from jaxnas import xla

    flag = cli.NO_TRITON_GEMM
    assert cli.search_xla_flags("") == flag
    assert cli.search_xla_flags("--xla_dump_to=/tmp/d") == f"--xla_dump_to=/tmp/d {flag}"
    mine = "--xla_gpu_enable_triton_gemm=true"
    assert cli.search_xla_flags(mine) == mine
    # the search command sets it before anything starts the backend (a bad config here)
    monkeypatch.setenv("XLA_FLAGS", "--xla_dump_to=/tmp/d")
    bad = ["search", "--config", str(tmp_path / "none.py"), "--workdir", str(tmp_path / "w")]
    assert cli.main(bad) == cli.EXIT_ERROR
    # (and, on the CPU, LLVM level 1 and oneDNN: test_runs_on_the_cpu_compile_at_llvm...)
    assert os.environ["XLA_FLAGS"] == xla.cpu_xla_flags(f"--xla_dump_to=/tmp/d {flag}")


def test_runs_on_the_cpu_compile_at_llvm_level_1_with_onednn_unless_the_user_chose(monkeypatch):
    """jaxnas.xla.cpu_xla_flags: LLVM level 1 and oneDNN where JAX runs on the CPU, the
    user's own setting of either kept, nothing added for another platform; the search
    command sets them."""
    from jaxnas import xla

    ours = f"{xla.CPU_OPT_LEVEL} {xla.CPU_ONEDNN}"
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    assert xla.cpu_xla_flags("") == ours
    assert xla.cpu_xla_flags("--xla_dump_to=/d") == f"--xla_dump_to=/d {ours}"
    mine = "--xla_backend_optimization_level=3"
    assert xla.cpu_xla_flags(mine) == f"{mine} {xla.CPU_ONEDNN}"
    mine = "--xla_cpu_use_onednn=false"
    assert xla.cpu_xla_flags(mine) == f"{mine} {xla.CPU_OPT_LEVEL}"
    monkeypatch.setenv("JAX_PLATFORMS", "cuda")
    assert xla.cpu_xla_flags("--xla_dump_to=/d") == "--xla_dump_to=/d"
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    monkeypatch.setenv("XLA_FLAGS", "")
    monkeypatch.setenv("JAXNAS_CACHE_DIR", "")
    xla.prepare(search=True)
    assert os.environ["XLA_FLAGS"] == f"{xla.NO_TRITON_GEMM} {ours}"


_KILLED_SEARCH = """
import os, signal, sys
sys.path.insert(0, sys.argv[1])
import orbax.checkpoint as ocp
import test_run as T
from jaxnas import loop
from jaxnas.run import search
moment, wd = sys.argv[2], sys.argv[3]
die = lambda: os.kill(os.getpid(), signal.SIGKILL)
on_step = (lambda epoch, step: die() if step == 6 else None) if moment == "mid_epoch" else None
if moment == "between_record_and_checkpoint":  # epoch 2's record written, its checkpoint not
    real = loop.append_jsonl
    def append(path, record):
        real(path, record)
        if record.get("kind") == "epoch" and record["epoch"] == 2:
            die()
    loop.append_jsonl = append
if moment == "during_checkpoint":  # epoch 2's checkpoint write started, not finished
    real_save = ocp.CheckpointManager.save
    def save(self, step, *a, **k):
        out = real_save(self, step, *a, **k)
        if step == 8:
            die()
        return out
    ocp.CheckpointManager.save = save
search(T.tiny_config(3), wd, build=T.toy_build, progress=False, on_step=on_step)
"""


@pytest.mark.parametrize(
    "moment", ["mid_epoch", "between_record_and_checkpoint", "during_checkpoint"]
)
def test_kill_9_of_a_search_then_resume_matches_straight_run(straight_run, tmp_path, moment):
    """A real SIGKILL of a search in a child process, then a resume: the same alphas,
    genotype file and records (no duplicates, no gaps) as the uninterrupted run."""
    import subprocess
    import sys

    wd_ref, summary_ref = straight_run
    wd = str(tmp_path / "wd")
    tests = os.path.dirname(os.path.abspath(__file__))
    child = subprocess.run(
        [sys.executable, "-c", _KILLED_SEARCH, tests, moment, wd],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]
    summary = search(tiny_config(3), wd, build=toy_build, progress=False, resume=True)
    assert summary["genotype"] == summary_ref["genotype"]
    assert _same_arch(_final_arch(wd_ref, 3), _final_arch(wd, 3))
    assert sorted(os.listdir(os.path.join(wd, "alphas"))) == sorted(
        os.listdir(os.path.join(wd_ref, "alphas"))
    )
    drop = ("time",)
    for kind in ("epoch", "step"):
        got = plots.read_metrics(os.path.join(wd, "metrics.jsonl"), kind=kind)
        ref = plots.read_metrics(os.path.join(wd_ref, "metrics.jsonl"), kind=kind)
        assert [{k: v for k, v in r.items() if k not in drop} for r in got] == [
            {k: v for k, v in r.items() if k not in drop} for r in ref
        ]
