"""Data-parallel search (issue 22): every method's step on a 2-device mesh equals its
1-device step on the same global batch; a search moves between device counts on resume.

The workers run in subprocesses (tests/_search_dist.py) with 2 forced host devices.
"""

import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from jaxnas import data

WORKER = os.path.join(os.path.dirname(__file__), "_search_dist.py")
TWO_DEVICES = "--xla_force_host_platform_device_count=2"
sys.path.insert(0, os.path.dirname(__file__))
import _search_dist  # noqa: E402


def _env():
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {TWO_DEVICES}"
    env["JAX_PLATFORMS"] = "cpu"
    return env


def _worker(*args, timeout=1200):
    p = subprocess.run(
        [sys.executable, WORKER, *map(str, args)],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert p.returncode == 0, (p.stdout + p.stderr)[-3000:]
    return p.stdout


@pytest.mark.slow
def test_two_devices_step_as_one_for_every_method(tmp_path):
    """For each method, one step on 2 devices (state replicated, batches split) equals
    the 1-device step on the same global batch: parameters, architecture variables,
    BN statistics and optimiser states, each leaf to float32 round-off relative to
    what the step changed (a leaf the step does not change stays as it was), and so is
    RARTS' and PR-DARTS' ``step_with`` on 2 devices (``mesh_entry``); the genotype
    read from the 2-device state (ASM-NAS: its selection) is the 1-device one."""
    out = tmp_path / "steps.npz"
    _worker("steps", out)
    r = np.load(out)
    leaves = sorted({k.rsplit("/", 1)[0] for k in r.files if "/" in k})
    assert {k.split("/")[0] for k in leaves} == set(_search_dist.CASES)
    for case in _search_dist.CASES:
        one, two = r[f"{case}~genotype"]
        assert one == two, case
        mine = [k for k in leaves if k.startswith(case + "/")]
        s0, s1 = ([r[f"{k}/{s}"] for k in mine] for s in ("s0", "s1"))
        change = max(float(np.max(np.abs(b - a), initial=0.0)) for a, b in zip(s0, s1))
        assert change > 0, case
        # s2: mesh_steps' train_step; s3: mesh_entry("step_with") (RARTS, PR-DARTS)
        others = [s for s in ("s2", "s3") if f"{mine[0]}/{s}" in r.files]
        assert others == (["s2", "s3"] if case in ("rarts", "prdarts") else ["s2"]), case
        for other in others:
            for k, a, b in zip(mine, s0, s1):
                c = r[f"{k}/{other}"]
                assert b.shape == c.shape and b.dtype == c.dtype, k
                if not np.issubdtype(b.dtype, np.floating):
                    np.testing.assert_array_equal(c, b, err_msg=k)
                    continue
                moved = float(np.max(np.abs(b - a), initial=0.0))
                scale = float(np.max(np.abs(b), initial=0.0))
                tol = 1e-3 * moved + 1e-6 * scale
                np.testing.assert_allclose(c, b, rtol=0, atol=tol, err_msg=f"{k} {other}")


def _fashion_mnist():
    try:
        data.load("fashion_mnist", "train", limit=1)
    except data.DatasetNotFoundError as e:
        pytest.skip(str(e))


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """The uninterrupted 1-device tiny search both tests below compare with (one
    subprocess for the two: the same config, so the same run)."""
    _fashion_mnist()
    one = tmp_path_factory.mktemp("straight") / "one"
    _worker("search", one, 1, 0)
    return one


def _alphas(workdir, epoch):
    with np.load(os.path.join(workdir, "alphas", f"epoch_{epoch:03d}.npz")) as f:
        return {k: f[k] for k in f.files}


@pytest.mark.slow
def test_search_moves_between_device_counts(tmp_path, straight):
    """A search on 2 devices stopped after epoch 1 resumes on 1 device (orbax restores
    the replicated checkpoint onto one device) and ends where the uninterrupted 1-device
    search ends; the resumed run logs its global batch and device count."""
    a, b = straight, tmp_path / "moved"
    assert "stopped" in _worker("search", b, 2, 1)
    assert not os.path.exists(os.path.join(b, "alphas", "epoch_002.npz"))
    _worker("search", b, 1, 0)
    log = open(os.path.join(b, "log.txt"), encoding="utf-8").read()
    assert "global batch 8 on 2 device(s)" in log and "global batch 8 on 1 device(s)" in log
    for epoch in (1, 2):
        x, y = _alphas(a, epoch), _alphas(b, epoch)
        x0 = _alphas(a, epoch - 1)
        assert x.keys() == y.keys()
        for k in x:
            moved = np.max(np.abs(x[k] - x0[k]))
            np.testing.assert_allclose(y[k], x[k], rtol=0, atol=1e-3 * moved + 1e-7)
    genotype = [open(os.path.join(w, "genotype.json")).read() for w in (a, b)]
    assert genotype[0] == genotype[1]


def _free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_search_as_one(tmp_path, straight):
    """jax.distributed on localhost: two CPU processes of one device each, each feeding
    its half of every batch, search as one process on one device; process 0 writes."""
    one, multi = straight, tmp_path / "multi"
    port = _free_port()
    procs = []
    for pid in range(2):
        env = _env()
        env["XLA_FLAGS"] = env["XLA_FLAGS"].replace(TWO_DEVICES, "")  # one device each
        env.update(
            JAXNAS_COORDINATOR=f"localhost:{port}",
            JAXNAS_NUM_PROCESSES="2",
            JAXNAS_PROCESS_ID=str(pid),
        )
        procs.append(
            subprocess.Popen(
                [sys.executable, WORKER, "host", str(multi)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
        )
    for p in procs:
        log = p.communicate(timeout=1200)[0].decode()
        assert p.returncode == 0, log[-3000:]
    assert "global batch 8 on 2 device(s) in 2 processes" in open(multi / "log.txt").read()
    for epoch in (1, 2):
        x, y, x0 = _alphas(one, epoch), _alphas(multi, epoch), _alphas(one, epoch - 1)
        for k in x:
            moved = np.max(np.abs(x[k] - x0[k]))
            np.testing.assert_allclose(y[k], x[k], rtol=0, atol=1e-3 * moved + 1e-7)
    assert open(one / "genotype.json").read() == open(multi / "genotype.json").read()


def test_batch_that_does_not_split_is_one_line(tmp_path):
    """``jaxnas search --devices 2`` with a global batch of 7: exit status 2, one line
    naming the batch and the devices, the workdir not created (no compile, no data)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    p = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from jaxnas.cli import main; sys.exit(main())",
            "search",
            "--config",
            os.path.join(root, "configs", "darts_fmnist_tiny.py"),
            "--workdir",
            str(tmp_path / "wd"),
            "--devices",
            "2",
            "--set",
            "data.batch_size=7",
        ],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 2 and p.stdout == "", p.stderr[-2000:]
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "data.batch_size=7" in lines[0] and "2 devices" in lines[0]
    assert not (tmp_path / "wd").exists()
