"""The one experiment loop (``jaxnas.loop``) with a tiny experiment of its own.

``LineFit`` is a real, if small, training run: least squares on synthetic data with
momentum SGD, input noise drawn from a key in the state, epochs of different lengths
(3, 4, 3, 4, ... steps: resume must locate a step across uneven epochs), an evaluation
that ranks epochs (``test/score``, the negative held-out loss) so the best state is
kept, and an optional NaN at a chosen step. Its batches are a pure function of
``(seed, epoch)``, as the loop requires. So kills, signals, NaN stops and the lock are
tested here once against the loop; the search and retraining tests repeat them for
their experiments.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxnas import loop, plots
from jaxnas.runtime import Interrupted, RunError

DIM = 4
W_TRUE = np.array([1.0, -2.0, 0.5, 3.0], np.float32)


def _config(epochs: int = 3, seed: int = 0, tensorboard: bool = False):
    c = ml_collections.ConfigDict()
    c.seed = seed
    c.epochs = epochs
    c.data = ml_collections.ConfigDict(dict(dataset="synthetic"))
    c.run = ml_collections.ConfigDict(
        dict(checkpoint_keep=10, log_every_steps=2, tensorboard=tensorboard)
    )
    return c


@jax.jit
def _step(state, batch, nan_at):
    x, y = batch
    key, sub = jax.random.split(state["rng"])
    x = x + 0.01 * jax.random.normal(sub, x.shape)
    loss, g = jax.value_and_grad(lambda w: jnp.mean((x @ w - y) ** 2))(state["w"])
    m = 0.9 * state["m"] + g
    w = state["w"] - 0.02 * m
    step = state["step"] + 1
    w = jnp.where(step >= nan_at, w * jnp.nan, w)
    loss = jnp.where(step >= nan_at, jnp.nan, loss)
    new = dict(w=w, m=m, step=step, rng=key)
    return new, dict(loss=loss, lr=jnp.float32(0.02))


class LineFit(loop.Experiment):
    """See the module docstring."""

    name = "line fit"
    best_metric = "test/score"
    examples_per_step = 8
    outputs = ("fit.txt",)

    def __init__(self, config, *, nan_at: int = 10**9, fail_setup: bool = False):
        self.config = config
        self.epochs = int(config.epochs)
        self.nan_at = nan_at
        self.fail_setup = fail_setup
        self.ends: list[int] = []

    def setup(self, wd, latest_step):
        if self.fail_setup:
            raise RunError("bad setting: data.dataset")
        rng = np.random.default_rng(12345)
        self.x_test = rng.normal(size=(32, DIM)).astype(np.float32)
        self.y_test = self.x_test @ W_TRUE

    def steps_in(self, epoch):
        return 3 + epoch % 2

    def init(self):
        key = jax.random.PRNGKey(self.config.seed)
        return dict(
            w=jnp.zeros(DIM),
            m=jnp.zeros(DIM),
            step=jnp.zeros((), jnp.int32),
            rng=jax.random.key_data(key),
        )

    def batches(self, epoch):
        rng = np.random.default_rng((self.config.seed, epoch))
        for _ in range(self.steps_in(epoch)):
            x = rng.normal(size=(8, DIM)).astype(np.float32)
            yield x, x @ W_TRUE

    def step(self, state, batch):
        state = dict(state, rng=jax.random.wrap_key_data(state["rng"]))
        new, metrics = _step(state, batch, self.nan_at)
        return dict(new, rng=jax.random.key_data(new["rng"])), metrics

    def start(self, wd, state, resumed_step):
        with open(wd.path("fit.txt"), "a", encoding="utf-8") as f:
            f.write(f"start {resumed_step}\n")

    def end_epoch(self, wd, state, epoch):
        self.ends.append(epoch)
        loss = float(jnp.mean((self.x_test @ state["w"] - self.y_test) ** 2))
        return state, {"test/score": -loss}

    def finish(self, wd, state, records):
        return {"w": [float(v) for v in np.asarray(state["w"])]}


class Kill(KeyboardInterrupt):
    """What a Ctrl-C / kill -9 looks like from inside the loop."""


def _records(wd, kind="epoch"):
    return plots.read_metrics(os.path.join(wd, "metrics.jsonl"), kind=kind)


def _strip(records, drop=("time", "images_per_s")):
    return [{k: v for k, v in r.items() if k not in drop} for r in records]


def _run(wd, config=None, **kw):
    exp_kw = {k: kw.pop(k) for k in ("nan_at", "fail_setup") if k in kw}
    return loop.run(
        LineFit(config or _config(), **exp_kw), config or _config(), wd, progress=False, **kw
    )


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    wd = str(tmp_path_factory.mktemp("straight"))
    return wd, _run(wd)


def test_straight_run_writes_the_layout(straight):
    wd, summary = straight
    for name in (
        "config.json",
        "log.txt",
        "metrics.jsonl",
        "summary.json",
        "best.json",
        "curves.png",
        ".lock",
        "fit.txt",
    ):
        assert os.path.exists(os.path.join(wd, name)), name
    # epochs of 3, 4, 3 steps: checkpoints at the global steps 3, 7, 10
    assert sorted(int(s) for s in os.listdir(os.path.join(wd, "checkpoints"))) == [3, 7, 10]
    records = _records(wd)
    assert [(r["epoch"], r["step"]) for r in records] == [(1, 3), (2, 7), (3, 10)]
    assert [r["step"] for r in _records(wd, "step")] == [2, 4, 6, 8, 10]
    assert summary["final"] == records[-1] and summary["epochs"] == 3
    best = json.load(open(os.path.join(wd, "best.json")))
    scores = [r["test/score"] for r in records]
    assert best["value"] == max(scores) and best["step"] == records[int(np.argmax(scores))]["step"]
    assert os.listdir(os.path.join(wd, "best")) == [str(best["step"])]
    assert summary["best"] == best
    log = open(os.path.join(wd, "log.txt")).read()
    assert "epoch 3/3" in log and "line fit done" in log


def test_records_are_the_means_of_the_step_metrics(straight):
    """Step records average the steps since the previous step record of the same epoch
    (a window never spans two epochs), epoch records their epoch's steps (recomputed
    here by running the experiment's steps by hand)."""
    wd, _ = straight
    exp = LineFit(_config())
    exp.setup(None, None)
    state, losses = exp.init(), []
    for e in range(3):
        for batch in exp.batches(e):
            state, m = exp.step(state, batch)
            losses.append(float(m["loss"]))
    bounds = [0, 3, 7, 10]
    for r in _records(wd, "step"):
        s = r["step"]
        first = max(s - 2, bounds[r["epoch"] - 1])  # step 4 opens epoch 2: a window of one
        assert r["train/loss"] == pytest.approx(np.mean(losses[first:s]), rel=1e-12)
    for i, r in enumerate(_records(wd)):
        want = np.mean(losses[bounds[i] : bounds[i + 1]])
        assert r["train/loss"] == pytest.approx(want, rel=1e-12)
        assert r["lr"] == pytest.approx(0.02)


@pytest.mark.parametrize(
    "stop",
    [
        "kill_mid_epoch_2",
        "kill_after_epoch_1",
        "sigterm_mid_epoch_2",
        "sigterm_on_last_step_of_epoch_2",
        "sigterm_after_last_epoch",
    ],
)
def test_stop_and_resume_equals_straight_run(straight, tmp_path, stop):
    wd_ref, ref = straight
    wd = str(tmp_path)

    def on_step(epoch, step):
        if stop == "kill_mid_epoch_2" and step == 5:
            raise Kill
        if stop == "sigterm_mid_epoch_2" and step == 5:
            os.kill(os.getpid(), signal.SIGTERM)
        if stop == "sigterm_on_last_step_of_epoch_2" and step == 7:
            os.kill(os.getpid(), signal.SIGTERM)

    def on_epoch_end(done, record):
        if stop == "kill_after_epoch_1" and done == 1:
            raise Kill
        if stop == "sigterm_after_last_epoch" and done == 3:
            os.kill(os.getpid(), signal.SIGTERM)

    expected = Interrupted if stop.startswith("sigterm") else KeyboardInterrupt
    with pytest.raises(expected) as e:
        _run(wd, on_step=on_step, on_epoch_end=on_epoch_end)
    kept = sorted(int(s) for s in os.listdir(os.path.join(wd, "checkpoints")))
    assert (
        kept
        == {
            "kill_mid_epoch_2": [3],
            "kill_after_epoch_1": [3],
            "sigterm_mid_epoch_2": [3, 5],  # the signal's own checkpoint
            "sigterm_on_last_step_of_epoch_2": [3, 7],  # the epoch was finished first
            "sigterm_after_last_epoch": [3, 7, 10],
        }[stop]
    )
    if stop == "sigterm_on_last_step_of_epoch_2":
        assert "after epoch 2" in str(e.value)
        assert [r["epoch"] for r in _records(wd)] == [1, 2]
    summary = _run(wd, resume=True)
    assert summary["w"] == ref["w"]
    assert _strip(_records(wd)) == _strip(_records(wd_ref))
    assert _strip(_records(wd, "step")) == _strip(_records(wd_ref, "step"))
    assert json.load(open(os.path.join(wd, "best.json"))) == ref["best"]
    assert summary["best"] == ref["best"]


def test_resume_of_a_finished_run_runs_no_step(straight, tmp_path):
    wd = str(tmp_path)
    first = _run(wd, _config(epochs=2))
    exp = LineFit(_config(epochs=2))
    again = loop.run(exp, _config(epochs=2), wd, resume=True, progress=False)
    assert exp.ends == [] and again["w"] == first["w"]
    assert [r["epoch"] for r in _records(wd)] == [1, 2]


def test_checkpoints_without_resume_are_refused(straight, tmp_path):
    wd = str(tmp_path)
    _run(wd, _config(epochs=1))
    with pytest.raises(RunError) as e:
        _run(wd, _config(epochs=1))
    assert "\n" not in str(e.value) and "--resume" in str(e.value)


def test_nan_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    wd = str(tmp_path)
    with pytest.raises(RunError) as e:
        _run(wd, nan_at=5)  # epoch 2
    msg = str(e.value)
    assert "\n" not in msg and "non-finite" in msg and "epoch 2" in msg
    assert "last good checkpoint is step 3" in msg
    assert os.listdir(os.path.join(wd, "checkpoints")) == ["3"]
    assert "stopped: RunError: non-finite" in open(os.path.join(wd, "log.txt")).read()


def test_failed_setup_changes_nothing(straight, tmp_path):
    wd = str(tmp_path)
    _run(wd, _config(epochs=1))
    before = {
        n: open(os.path.join(wd, n), "rb").read()
        for n in ("config.json", "metrics.jsonl", "summary.json", "fit.txt")
    }
    with pytest.raises(RunError, match="bad setting"):
        _run(wd, _config(epochs=2), resume=True, fail_setup=True)
    for n, content in before.items():
        assert open(os.path.join(wd, n), "rb").read() == content, n
    # the attempt is in the log as refused, not as a run that stopped
    last = open(os.path.join(wd, "log.txt")).read().splitlines()[-1]
    assert last.endswith("ERROR not started: RunError: bad setting: data.dataset"), last


def test_a_workdir_the_failed_run_created_is_removed(tmp_path):
    """A run that fails before its first step removes the workdir it created (a
    refused command leaves nothing); a workdir that existed stays, and one where the
    steps began keeps its log and checkpoints."""
    fresh, existing = tmp_path / "fresh", tmp_path / "existing"
    existing.mkdir()
    for wd in (fresh, existing):
        with pytest.raises(RunError, match="bad setting"):
            _run(str(wd), _config(epochs=1), fail_setup=True)
    assert not fresh.exists() and existing.is_dir()
    began = tmp_path / "began"
    with pytest.raises(RunError, match="non-finite"):
        _run(str(began), _config(epochs=2), nan_at=5)
    assert "stopped: RunError: non-finite" in (began / "log.txt").read_text()
    assert os.listdir(began / "checkpoints") == ["3"]


def test_fresh_run_removes_outputs_of_a_run_without_checkpoints(tmp_path):
    wd = str(tmp_path)
    for n in ("metrics.jsonl", "summary.json", "fit.txt"):
        (tmp_path / n).write_text('{"kind": "epoch", "epoch": 9, "step": 99}\n')
    _run(wd, _config(epochs=1))
    assert [r["epoch"] for r in _records(wd)] == [1]
    assert open(os.path.join(wd, "fit.txt")).read() == "start None\n"


_HOLD_LOCK = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
os.write(fd, f"{os.getpid()}\\n".encode())
print("locked", flush=True)
time.sleep(600)
"""


def test_a_second_run_on_a_workdir_is_refused_until_the_first_dies(tmp_path):
    wd = str(tmp_path)
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_LOCK, os.path.join(wd, ".lock")],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunError) as e:
            _run(wd, _config(epochs=1))
        msg = str(e.value)
        assert "\n" not in msg and "in use" in msg and f"pid {holder.pid}" in msg
        assert not os.path.exists(os.path.join(wd, "config.json"))  # nothing touched
    finally:
        holder.kill()  # like kill -9: the lock file stays, the lock goes with the process
        holder.wait()
    time.sleep(0.05)
    assert os.path.exists(os.path.join(wd, ".lock"))
    assert _run(wd, _config(epochs=1))["final"]["epoch"] == 1


def test_workdir_that_is_a_file_is_one_line(tmp_path):
    path = tmp_path / "file"
    path.write_text("x")
    with pytest.raises(RunError) as e:
        _run(str(path), _config(epochs=1))
    assert "\n" not in str(e.value) and "is a file" in str(e.value)


def test_metric_names_and_log_line():
    assert loop.metric_name("loss") == "train/loss"
    assert loop.metric_name("valid_accuracy") == "valid/accuracy"
    assert loop.metric_name("lr_arch") == "lr_arch"
    assert loop.metric_name("test/top5") == "test/top5"
    line = loop.log_line(
        {"epoch": 2, "train/loss": 0.5, "valid/accuracy": 0.25, "lr": 0.1, "time": 3.0}, 5
    )
    assert line == "epoch 2/5 | train loss 0.5000 | valid acc 0.2500 | lr 0.1 | 3.0s"


# ------------------------------------------------------------------ crash safety


def _largest_data_file(folder):
    files = [os.path.join(d, f) for d, _, fs in os.walk(folder) for f in fs]
    return max(files, key=os.path.getsize)


def _corrupt_random_bytes(folder):
    path = _largest_data_file(folder)
    with open(path, "r+b") as f:
        f.seek(max(0, os.path.getsize(path) // 2 - 2048))
        f.write(np.random.default_rng(0).bytes(4096))


def _truncate_data(folder):
    path = _largest_data_file(folder)
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 3)


def _stray_folder(wd):
    os.makedirs(os.path.join(wd, "checkpoints", "11"))  # newer than the last real one


@pytest.mark.parametrize("damage", ["random_bytes", "truncated", "stray_folder"])
def test_a_damaged_latest_checkpoint_falls_back_to_the_one_before(straight, tmp_path, damage):
    """The latest checkpoint (or a stray newer folder) is unusable: the resume moves it
    to corrupt/, says so in one warning, continues from the checkpoint before it and
    ends as the uninterrupted run did."""
    wd_ref, ref = straight
    wd = str(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        _run(wd, on_epoch_end=lambda done, r: (_ for _ in ()).throw(Kill) if done == 2 else 0)
    assert sorted(int(s) for s in os.listdir(os.path.join(wd, "checkpoints"))) == [3, 7]
    if damage == "stray_folder":
        _stray_folder(wd)
    else:
        {"random_bytes": _corrupt_random_bytes, "truncated": _truncate_data}[damage](
            os.path.join(wd, "checkpoints", "7")
        )
    summary = _run(wd, resume=True)
    assert summary["w"] == ref["w"]
    assert _strip(_records(wd)) == _strip(_records(wd_ref))
    moved = os.listdir(os.path.join(wd, "corrupt"))
    assert len(moved) == 1 and moved[0].startswith(
        "checkpoint_11_" if damage == "stray_folder" else "checkpoint_7_"
    )
    assert "is not usable" in open(os.path.join(wd, "log.txt")).read()


def test_no_usable_checkpoint_is_one_line(tmp_path):
    wd = str(tmp_path)
    _run(wd, _config(epochs=1))
    _corrupt_random_bytes(os.path.join(wd, "checkpoints", "3"))
    with pytest.raises(RunError) as e:
        _run(wd, _config(epochs=2), resume=True)
    assert "\n" not in str(e.value) and "no usable checkpoint" in str(e.value)


def test_a_full_disk_is_one_line_and_keeps_the_checkpoints_before(straight, tmp_path, monkeypatch):
    import errno

    wd_ref, ref = straight
    wd = str(tmp_path)
    real = loop.append_jsonl

    def full_at_epoch_2(path, record):
        if record.get("kind") == "epoch" and record["epoch"] == 2:
            raise OSError(errno.ENOSPC, "No space left on device", path)
        real(path, record)

    monkeypatch.setattr(loop, "append_jsonl", full_at_epoch_2)
    with pytest.raises(RunError) as e:
        _run(wd)
    msg = str(e.value)
    assert "\n" not in msg and "no space left" in msg and "metrics.jsonl" in msg
    assert os.listdir(os.path.join(wd, "checkpoints")) == ["3"]
    monkeypatch.setattr(loop, "append_jsonl", real)
    assert _run(wd, resume=True)["w"] == ref["w"]
    assert _strip(_records(wd)) == _strip(_records(wd_ref))


_KILLED_RUN = """
import os, signal, sys
sys.path.insert(0, sys.argv[1])
import orbax.checkpoint as ocp
import test_loop as T
from jaxnas import loop
moment, wd = sys.argv[2], sys.argv[3]
die = lambda: os.kill(os.getpid(), signal.SIGKILL)
if moment == "mid_epoch":
    on_step = lambda epoch, step: die() if step == 5 else None
else:
    on_step = None
if moment == "between_record_and_checkpoint":  # epoch 2's record is written, its checkpoint not
    real = loop.append_jsonl
    def append(path, record):
        real(path, record)
        if record.get("kind") == "epoch" and record["epoch"] == 2:
            die()
    loop.append_jsonl = append
if moment == "during_checkpoint":  # epoch 2's checkpoint write has started, not finished
    real_save = ocp.CheckpointManager.save
    def save(self, step, *a, **k):
        out = real_save(self, step, *a, **k)
        if step == 7 and "best" not in str(self.directory):
            die()
        return out
    ocp.CheckpointManager.save = save
if moment == "after_checkpoint":
    on_epoch_end = lambda done, record: die() if done == 2 else None
else:
    on_epoch_end = None
loop.run(T.LineFit(T._config()), T._config(), wd, progress=False, on_step=on_step,
         on_epoch_end=on_epoch_end)
"""


@pytest.mark.parametrize(
    "moment",
    ["mid_epoch", "between_record_and_checkpoint", "during_checkpoint", "after_checkpoint"],
)
def test_kill_9_at_any_moment_then_resume_equals_straight_run(straight, tmp_path, moment):
    """A real SIGKILL of a run in a child process (no cleanup of any kind runs), then a
    resume here: same final state, records without duplicates or gaps, same best."""
    wd_ref, ref = straight
    wd = str(tmp_path / "wd")
    tests = os.path.dirname(os.path.abspath(__file__))
    child = subprocess.run(
        [sys.executable, "-c", _KILLED_RUN, tests, moment, wd],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]
    summary = _run(wd, resume=True)
    assert summary["w"] == ref["w"]
    assert _strip(_records(wd)) == _strip(_records(wd_ref))
    assert _strip(_records(wd, "step")) == _strip(_records(wd_ref, "step"))
    assert summary["best"] == ref["best"]
    assert json.load(open(os.path.join(wd, "best.json"))) == ref["best"]
    assert os.listdir(os.path.join(wd, "best")) == [str(ref["best"]["step"])]
