"""The Fashion-MNIST head-to-head (``experiments/fmnist_head_to_head.py``)."""

import importlib.util
import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

from jaxnas.genotype import DARTS_V2, Genotype

ROOT = Path(__file__).resolve().parents[1]
CONFIG = str(ROOT / "configs" / "head_to_head_fmnist.py")


def _module():
    spec = importlib.util.spec_from_file_location(
        "fmnist_head_to_head", ROOT / "experiments" / "fmnist_head_to_head.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


h2h = _module()


def test_aggregate_means_and_sample_std():
    def rec(method, seed, err, params, search_s, skips):
        return dict(method=method, seed=seed, test_error=err, params_M=params, macs_M=1.0,
                    search_s=search_s, retrain_s=2.0, normal_skips=skips)  # fmt: skip

    records = [
        rec("a", 0, 10.0, 0.1, 5.0, 2),
        rec("a", 1, 12.0, 0.3, 7.0, 0),
        rec("a", 2, 14.0, 0.2, 9.0, 1),
        rec("b", 0, 20.0, 1.0, 1.0, 4),
    ]
    rows = h2h.aggregate(records, ["b", "a", "missing"])
    assert [r["method"] for r in rows] == ["b", "a"]
    a = rows[1]
    assert a["seeds"] == 3
    assert a["test_error_mean"] == pytest.approx(12.0)
    assert a["test_error_std"] == pytest.approx(2.0)  # sample std of 10, 12, 14
    assert a["params_M"] == pytest.approx(0.2) and a["normal_skips"] == pytest.approx(1.0)
    assert rows[0]["test_error_std"] == 0.0
    table = h2h.markdown_table(rows)
    lines = table.strip().splitlines()
    assert len(lines) == 2 + 2 and lines[3].startswith("| a | 12.00 ± 2.00 |")


def test_normal_skips_counts_skip_connections_of_the_normal_cells():
    assert h2h.normal_skips(DARTS_V2) == 2  # DARTS_V2's normal cell has two skips
    # one cell per layer: the mean over the normal layers (reductions excluded)
    g = Genotype.from_cells([DARTS_V2.normal, DARTS_V2.reduce, DARTS_V2.reduce], reductions=(1,))
    n_reduce = sum(op == "skip_connect" for op, _ in DARTS_V2.reduce.pairs)
    assert h2h.normal_skips(g) == pytest.approx((2 + n_reduce) / 2)


def test_load_experiment_quick_and_overrides():
    full = h2h.load_experiment(CONFIG, quick=False)
    quick = h2h.load_experiment(CONFIG, quick=True, sets=["search.search.epochs=1"])
    assert len(full["methods"]) == 9 and len(full["seeds"]) == 3
    assert quick["seeds"] == (0,)
    assert quick["search"]["search.epochs"] == "1"
    assert quick["search"]["model.init_channels"] == full["search"]["model.init_channels"]
    assert int(quick["retrain"]["data.limit"]) < int(full["retrain"]["data.limit"])
    # the SparseNAS rows ramp lambda per step; quick and full end at the same lambda,
    # lam_step * epochs, and both end each cell type's path at the same size
    plain = h2h.load_experiment(CONFIG, quick=True)
    for row in ("sparsenas_hapg", "sparsenas_adamhapg"):
        q, f = plain["methods"][row][1], full["methods"][row][1]
        assert f["search.lam_every"] == q["search.lam_every"] == "step"
        assert int(f["search.max_ops"]) == int(q["search.max_ops"]) > 0
        full_end = float(f["search.lam_step"]) * int(full["search"]["search.epochs"])
        quick_end = float(q["search.lam_step"]) * int(plain["search"]["search.epochs"])
        assert quick_end == pytest.approx(full_end) and full_end > 0
    assert "search.lam_step" not in quick["methods"]["darts_1st"][1]
    with pytest.raises(ValueError, match="search.KEY=VALUE"):
        h2h.load_experiment(CONFIG, quick=True, sets=["epochs=1"])
    one = h2h.load_experiment(CONFIG, quick=False, sets=["rarts.search.lam=0.5"])
    assert one["methods"]["rarts"][1] == {"search.lam": "0.5"}
    assert (
        "search.lam" not in one["search"]
        and one["methods"]["darts_1st"] == full["methods"]["darts_1st"]
    )
    with pytest.raises(ValueError, match="unknown methods"):
        h2h.run(CONFIG, "/nonexistent/never", methods=["dartz"])


def test_every_row_resolves_to_a_valid_search_config():
    from jaxnas.config import load_config

    exp = h2h.load_experiment(CONFIG, quick=False)
    methods = set()
    for name, (path, overrides) in exp["methods"].items():
        c = load_config(
            ROOT / path, h2h._override_strings({**exp["search"], **overrides, "seed": 1})
        )
        methods.add(c.method)
        # the same budget and supernet size for every row
        shared = [exp["search"][k] for k in ("data.limit", "search.epochs")]
        shared += [exp["search"][k] for k in ("model.init_channels", "model.layers")]
        assert [c.data.limit, c.search.epochs, c.model.init_channels, c.model.layers] == [
            int(v) for v in shared
        ], name
    assert methods == {"darts", "rarts", "sparsenas", "bayesnas", "asmnas", "prdarts", "gdas"}
    load_config(ROOT / exp["retrain_config"], h2h._override_strings(exp["retrain"]))


# Compile time dominates at this size and grows with the ops per edge and the convolutions
# per op: every row searches a three-op space (plus each method's zero op) whose one
# parametric op is the single convolution ``conv_3x3`` (PR-DARTS' regulariser needs a
# separable or dilated conv, BayesNAS has its BN-first separable conv).  At this budget
# the SparseNAS and BayesNAS cells keep every op (lambda 0.3 is far from zeroing theta in
# four steps): their retraining compiles the largest networks.
_OPS = "skip_connect,max_pool_3x3,conv_3x3"
TINY = [
    *[f"{m}.model.primitives=none,{_OPS}" for m in ("darts_1st", "darts_2nd", "rarts", "gdas")],
    "asmnas.model.primitives=none," + _OPS,
    "prdarts.model.primitives=none,skip_connect,max_pool_3x3,sep_conv_3x3",
    *[f"{m}.model.primitives={_OPS}" for m in ("sparsenas_hapg", "sparsenas_adamhapg")],
    *[f"{m}.search.lam_start=0.3" for m in ("sparsenas_hapg", "sparsenas_adamhapg")],
    "bayesnas.model.primitives=none,skip_connect,max_pool_3x3,bn_sep_conv_3x3",
    "search.data.limit=128",
    "search.data.batch_size=16",
    "search.search.epochs=1",
    "search.model.layers=3",
    "search.model.init_channels=2",
    "retrain.data.limit=128",
    "retrain.data.batch_size=32",
    "retrain.train.epochs=1",
    "retrain.run.eval_limit=128",
    "retrain.model.layers=3",
    "retrain.model.init_channels=4",
    "retrain.model.auxiliary=False",
    "retrain.model.drop_path_prob=0.0",
]

#: The rows the end-to-end test below runs (XLA compiles each row's search and retraining
#: programs, minutes of a 2-core CI machine per row): ASM-NAS, the one row that goes
#: through ``run_one``'s selection step and retrains one cell per layer, and SparseNAS-HAPG,
#: the row with the most of its own settings (HAPG, the per-step lambda ramp of the quick
#: budget, ``max_ops``' path end, the per-cell clip of A) and a mixed-path cell.  Every
#: row's own search config is built and its step traced by
#: ``test_every_row_builds_and_traces_its_search_step``; every method's search runs through
#: the same runner in its own test file (test_darts, test_run, test_rarts, test_sparsenas,
#: test_bayesnas, test_asmnas, test_prdarts).
E2E_ROWS = ("sparsenas_hapg", "asmnas")


@pytest.mark.slow
def test_every_row_builds_and_traces_its_search_step():
    """Each row of the quick head-to-head (its config, the shared overrides and its own, at
    the end-to-end test's size) builds its search method, initialises it, and its train
    and eval steps trace to a state of the same structure, shapes and dtypes: what a row
    needs before the runner can search it (the searches themselves run in the end-to-end
    test below and in each method's own test file)."""
    import jax

    from jaxnas.config import load_config
    from jaxnas.search import build

    exp = h2h.load_experiment(CONFIG, quick=True, sets=TINY)
    assert set(E2E_ROWS) < set(exp["methods"])
    methods = {}
    for name, (path, overrides) in exp["methods"].items():
        c = load_config(
            ROOT / path, h2h._override_strings({**exp["search"], **overrides, "seed": 0})
        )
        assert (c.data.limit, c.data.batch_size, c.search.epochs) == (128, 16, 1), name
        m = build(c, steps_per_epoch=4, num_classes=10, input_shape=(28, 28, 1))
        methods[name] = c.method
        b = c.data.batch_size
        images = np.zeros((b, 28, 28, 1), np.float32)
        # shapes only: tracing, no compilation (building the programs is the point here)
        state = jax.eval_shape(lambda k, m=m, images=images: m.init(k, images), jax.random.key(0))
        batch = (
            jax.ShapeDtypeStruct((b, 28, 28, 1), np.float32),
            jax.ShapeDtypeStruct((b,), np.int32),
        )
        new, metrics = jax.eval_shape(m.train_step, state, batch, batch)
        spec = lambda t: jax.tree.map(lambda x: (x.shape, x.dtype), t)  # noqa: E731
        assert spec(new) == spec(state), name
        assert "loss" in metrics and all(v.shape == () for v in metrics.values()), name
        assert {"loss", "accuracy"} <= set(jax.eval_shape(m.eval_step, new, batch)), name
    assert set(methods.values()) == {
        "darts",
        "rarts",
        "sparsenas",
        "bayesnas",
        "asmnas",
        "prdarts",
        "gdas",
    }


@pytest.mark.slow
def test_quick_head_to_head_end_to_end_and_resume(tmp_path):
    # two rows at a time, in child processes; the rerun below runs in this process
    rows = list(reversed(E2E_ROWS))  # the table keeps the config's order
    out = h2h.run(CONFIG, str(tmp_path), quick=True, sets=TINY, jobs=2, methods=rows)
    names = [m for m in h2h.load_experiment(CONFIG, quick=True)["methods"] if m in rows]
    assert len(names) == len(rows) == 2
    table = (tmp_path / "table.md").read_text()
    rows_md = [line for line in table.splitlines()[2:] if line.startswith("|")]
    assert [r.split("|")[1].strip() for r in rows_md] == names  # one row per method, in order
    records = json.loads((tmp_path / "results.json").read_text())
    assert {r["method"] for r in records} == set(names)
    for r in records:
        assert 0.0 <= r["test_error"] <= 100.0 and r["test_examples"] == 128
        assert r["params_M"] > 0 and r["macs_M"] > 0 and r["search_s"] > 0
        assert os.path.exists(tmp_path / r["genotype_json"])
    asm = next(r for r in records if r["method"] == "asmnas")
    assert asm["genotype_json"].endswith(os.path.join("selection", "genotype.json"))
    assert os.path.exists(out["cells_png"]) and os.path.exists(out["alphas_png"])
    assert all((tmp_path / m / "seed0" / "row.log").exists() for m in names)
    assert all(r["cpus"] == 1 for r in records)  # each child row ran on one CPU
    # rerun: every (method, seed) is finished, so nothing is searched or trained again
    stamps = {p: p.stat().st_mtime_ns for p in tmp_path.glob("*/seed0/result.json")}
    assert len(stamps) == 2
    again = h2h.run(CONFIG, str(tmp_path), quick=True, sets=TINY, methods=rows)
    assert [r["test_error"] for r in again["records"]] == [r["test_error"] for r in records]
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    # other settings in the same workdir are refused
    with pytest.raises(ValueError, match="other settings"):
        h2h.run(
            CONFIG,
            str(tmp_path),
            quick=True,
            sets=[*TINY, "search.search.epochs=2"],
            methods=rows,
        )
    assert np.isfinite([r["test_error"] for r in records]).all()


def test_a_failing_child_row_raises_with_its_log(tmp_path):
    from jaxnas.runtime import RunError

    # the child cannot resolve the row, exits non-zero; the error names the row and log
    with pytest.raises(RunError, match=r"no_such_row seed 3 failed .*row\.log"):
        h2h.run_rows_in_children(
            CONFIG, str(tmp_path), [("no_such_row", 3)], quick=True, sets=(), jobs=2, poll_s=0.05
        )
    assert "no_such_row" in (tmp_path / "no_such_row" / "seed3" / "row.log").read_text()


def test_jobs_must_be_positive(tmp_path):
    with pytest.raises(ValueError, match="--jobs"):
        h2h.run(CONFIG, str(tmp_path), quick=True, jobs=0)


def test_a_second_run_in_the_same_workdir_is_refused(tmp_path):
    import fcntl

    with open(tmp_path / ".lock", "w") as held:  # what a running head-to-head holds
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(ValueError, match="another head-to-head is running"):
            h2h.run(CONFIG, str(tmp_path), quick=True)
    assert not (tmp_path / "experiment.json").exists()


def test_stage_times_add_up_over_resumes_and_count_an_interrupted_stage(tmp_path):
    path = str(tmp_path / "times.json")

    def interrupted():
        time.sleep(0.05)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        h2h._timed(path, "search", interrupted)
    first = json.load(open(path))["search"]
    assert first >= 0.05
    out, total = h2h._timed(path, "search", lambda: (time.sleep(0.02), "done")[1])
    assert out == "done" and total >= first + 0.02
    assert json.load(open(path)) == {"search": total}
