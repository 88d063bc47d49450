"""The benchmark suite's plumbing (benchmarks/): comparison table, argument checks, the
machine description, the child-process watchdog, the timing helper and the side-by-side
comparison with the DARTS reference (vs_reference.py).  Nothing here asserts a time."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "benchmarks"))
import bench_suite  # noqa: E402
import common  # noqa: E402
import compare  # noqa: E402
import vs_reference  # noqa: E402


def _suite(rows: list[dict], **machine) -> dict:
    return dict(suite=bench_suite.SUITE, cpu_model="test cpu", jax="0", **machine, results=rows)


def _row(method, size, compile_s, step_s, peak):
    return dict(method=method, size=size, compile_s=compile_s, step_s=step_s, peak_rss_gb=peak)


def _write(path, data) -> str:
    path.write_text(json.dumps(data))
    return str(path)


def _table_rows(text: str) -> dict[tuple[str, str], list[str]]:
    """(method, size) -> the row's cells after method and size."""
    out = {}
    for line in text.splitlines():
        if line.startswith("| ") and not line.startswith("| method"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            out[cells[0], cells[1]] = cells[2:]
    return out


def test_compare_ratios_are_new_over_old(tmp_path, capsys):
    old = _suite(
        [
            _row("darts_1st", "tiny", 10.0, 2.0, 4.0),
            _row("rarts", "tiny", 20.0, 4.0, 3.0),
            dict(method="darts_2nd", size="paper", error="killed by signal 9 (out of memory?)"),
        ]
    )
    new = _suite(
        [
            _row("darts_1st", "tiny", 5.0, 3.0, 4.0),
            _row("rarts", "tiny", 30.0, 1.0, 6.0),
            _row("darts_2nd", "paper", 100.0, 50.0, 8.0),
            _row("prdarts", "tiny", 1.0, 1.0, 1.0),
        ]
    )
    compare.main([_write(tmp_path / "old.json", old), _write(tmp_path / "new.json", new)])
    text = capsys.readouterr().out
    rows = _table_rows(text)
    # columns: compile old/new/ratio, step old/new/ratio, peak old/new/ratio, note
    assert rows["darts_1st", "tiny"][2::3][:3] == ["0.50x", "1.50x", "1.00x"]
    assert rows["rarts", "tiny"][2::3][:3] == ["1.50x", "0.25x", "2.00x"]
    # a failed row and a row in one file only: no ratios, a note saying why
    assert rows["darts_2nd", "paper"][2::3][:4] == ["-", "-", "-", "-"]
    assert "old: killed by signal 9" in rows["darts_2nd", "paper"][-1]
    assert rows["prdarts", "tiny"][-1] == "only in new"
    # geometric mean of the step ratios of the rows measured in both: sqrt(1.5 * 0.25)
    assert f"{math.sqrt(1.5 * 0.25):.2f}x" in text.splitlines()[-1]


def test_single_file_table_lists_every_row(tmp_path, capsys):
    ok = dict(_row("darts_2nd", "paper", 100.0, 50.0, 8.0), kind="search", init_channels=16)
    ok.update(layers=8, batch=64, order="second", remat=True, init_s=20.0, loadavg_end=[3.5, 2, 1])
    gpu = dict(_row("darts_1st", "paper", 30.0, 0.05, 2.0), kind="search", init_channels=16)
    gpu.update(layers=8, batch=64, init_s=5.0, peak_device_gb=6.5, step_cpu_s=0.01)
    bad = dict(method="retrain_imagenet", size="paper", error="killed: ran past the 9 s limit")
    compare.main([_write(tmp_path / "one.json", _suite([ok, bad, gpu]))])
    rows = _table_rows(capsys.readouterr().out)
    # init, compile, step, host GB, device GB (accelerator files only), step CPU s
    assert rows["darts_1st", "paper"][1:7] == ["5", "30", "0.05", "2", "6.5", "0.01"]
    assert rows["darts_2nd", "paper"] == [
        "C=16, 8 cells, batch 64, second order, remat",
        *["20", "100", "50", "8", "-", "-", "3.5", ""],
    ]
    assert rows["retrain_imagenet", "paper"][-1] == "killed: ran past the 9 s limit"


def test_compare_rejects_unknown_and_mismatched_files(tmp_path):
    good = _write(tmp_path / "good.json", _suite([_row("darts_1st", "tiny", 1.0, 1.0, 1.0)]))
    with pytest.raises(compare.CompareError, match="no such file"):
        compare.load(str(tmp_path / "missing.json"))
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(compare.CompareError, match="not JSON"):
        compare.load(str(tmp_path / "broken.json"))
    # the older per-script files (bench_supernet.py's rows have size/order, no suite key)
    old_style = dict(device="cpu", results=[dict(size="tiny", order="first", step_s=1.0)])
    with pytest.raises(compare.CompareError, match="not a benchmarks/bench_suite.py result"):
        compare.load(_write(tmp_path / "supernet.json", old_style))
    no_method = dict(suite=bench_suite.SUITE, results=[dict(size="tiny")])
    with pytest.raises(compare.CompareError, match='"method" and "size"'):
        compare.load(_write(tmp_path / "nometh.json", no_method))
    other = _write(tmp_path / "other.json", _suite([_row("rarts", "paper", 1.0, 1.0, 1.0)]))
    with pytest.raises(compare.CompareError, match="no \\(method, size\\) row measured in both"):
        compare.compare(compare.load(good), compare.load(other))
    with pytest.raises(SystemExit) as e:
        compare.main([good, other])
    assert e.value.code == 2


def test_only_and_sizes_parsing():
    assert bench_suite.parse_only("rarts, darts_1st,rarts") == ["rarts", "darts_1st"]
    with pytest.raises(ValueError, match="unknown benchmark 'dartz'.*known: darts_1st"):
        bench_suite.parse_only("darts_1st,dartz")
    with pytest.raises(ValueError, match="empty"):
        bench_suite.parse_only(" , ")
    with pytest.raises(ValueError, match="unknown size 'huge'"):
        bench_suite.parse_list("tiny,huge", bench_suite.SIZES, "size")
    # the CLI refuses before any child process starts
    for argv in (["--only", "dartz"], ["--sizes", "huge"], ["--steps", "0"]):
        with pytest.raises(SystemExit) as e:
            bench_suite.main(argv)
        assert e.value.code == 2
    # every search method of the library has a row, and every row has a size
    from jaxnas.search import METHODS

    search_rows = {
        b["configs"]["tiny"].split("_")[0]
        for b in bench_suite.BENCHES.values()
        if b["kind"] == "search"
    }
    assert search_rows == set(METHODS)
    assert all(bench_suite.sizes_of(b) for b in bench_suite.BENCHES)


def test_search_configs_have_the_sizes_they_claim():
    for bench in ("darts_1st", "sparsenas_hapg", "asmnas"):
        for size, s in bench_suite.SEARCH_SIZES.items():
            cfg = bench_suite.search_config(bench, size, remat=size == "paper")
            assert (cfg.model.init_channels, cfg.data.batch_size) == (
                s["init_channels"],
                s["batch"],
            )
            own = size in bench_suite.BENCHES[bench].get("own_layers", ())
            assert cfg.model.layers == (15 if own else s["layers"])
            assert cfg.model.remat == (size == "paper")
    assert bench_suite.search_config("sparsenas_hapg", "tiny", False).search.optimizer == "hapg"
    assert bench_suite.search_config("darts_2nd", "tiny", False).search.order == "second"


def test_child_env_one_device_default_threads_cold_cache():
    env = bench_suite.child_env(
        {
            "XLA_FLAGS": "--xla_force_host_platform_device_count=4 --xla_dump_to=/tmp/x",
            "JAX_COMPILATION_CACHE_DIR": "/tmp/cache",
        }
    )
    assert env["XLA_FLAGS"] == "--xla_dump_to=/tmp/x"
    assert "JAX_COMPILATION_CACHE_DIR" not in env
    assert "XLA_FLAGS" not in bench_suite.child_env(
        {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    )


def test_machine_description_has_the_required_keys():
    m = common.machine()
    need = {"cpu_model", "cpu_count", "cpus_usable", "ram_gb", "jax", "jaxlib", "flax"}
    need |= {"xla_flags", "threads", "date", "datetime_utc", "loadavg", "platform", "device"}
    assert need <= set(m)
    assert m["cpu_count"] >= m["cpus_usable"] >= 1
    assert len(m["loadavg"]) == 3 and isinstance(m["threads"], dict)
    json.dumps(m)  # JSON-serialisable as written


def test_run_child_result_error_memory_limit_and_partial(tmp_path):
    script = tmp_path / "child.py"
    script.write_text(
        textwrap.dedent(
            """
            import json, os, sys, time
            mode = sys.argv[1]
            if mode == "ok":
                print("noise"); print(json.dumps({"x": 1}))
            elif mode == "fail":
                raise SystemExit("bad input: no such row")
            elif mode == "abort":  # as XLA does on a failed CHECK: a fatal log line, SIGABRT
                sys.stderr.write("I1126 info\\nF1126 01:54:38 x.cc:703] Check failed: a == b"
                    + " (256 vs. 32)\\n*** Check failure stack trace: ***\\n    @ 0x7f\\n")
                sys.stderr.flush()
                os.abort()
            elif mode == "big":
                block = bytearray(400 * 2**20)  # resident once written
                for i in range(0, len(block), 4096):
                    block[i] = 1
                time.sleep(30)
            else:  # reports progress as time_step does, then hangs
                with open(os.environ["JAXNAS_BENCH_PARTIAL"], "w") as f:
                    json.dump({"init_s": 1.5, "compile_s": 2.5}, f)
                time.sleep(30)
            """
        )
    )
    assert common.run_child(str(script), ["ok"]) == {"x": 1}
    r = common.run_child(str(script), ["fail"])
    assert r["error"] == "bad input: no such row" and "partial" not in r
    r = common.run_child(str(script), ["abort"])
    assert r["error"] == "killed by signal 6: Check failed: a == b (256 vs. 32)"
    r = common.run_child(str(script), ["big"], max_rss_gb=0.2, timeout_s=25)
    assert r["error"] == "killed: resident memory passed the 0.2 GB limit"
    assert r["observed_peak_gb"] > 0.2
    r = common.run_child(str(script), ["hang"], timeout_s=2)
    assert r["error"] == "killed: ran past the 2 s limit"
    assert r["partial"] == {"init_s": 1.5, "compile_s": 2.5}


def test_fatal_line_is_the_last_fatal_log_line():
    assert common.fatal_line("I0 ok\nW1 careful\n") is None
    text = "F1126 a.cc:1] first\nnoise\nF1126 b.cc:2] Check failed: x (1 vs. 2)\n  @ 0x1\n"
    assert common.fatal_line(text) == "Check failed: x (1 vs. 2)"
    assert common.fatal_line("F1126 c.cc:3] out of range\n") == "F1126 c.cc:3] out of range"


def test_time_step_runs_one_warmup_then_steps(tmp_path, monkeypatch):
    import jax

    @jax.jit
    def step(s, inc):
        return s + inc, {"count": s + inc}

    partial = tmp_path / "partial.json"
    monkeypatch.setenv(common.PARTIAL_VAR, str(partial))
    r = common.time_step(lambda: jax.numpy.zeros(()), step, lambda s: (s, 1.0), steps=3)
    # the last report is written before the last timed step
    reported = json.loads(partial.read_text())
    assert reported["step_s_all"] == r["step_s_all"][:2]
    assert reported["compile_s"] == r["compile_s"]
    # init 0, one warm-up step and three timed ones: the last metrics saw 4 increments
    assert r["metrics"] == {"count": 4.0}
    assert len(r["step_s_all"]) == 3 and r["step_s"] == sorted(r["step_s_all"])[1]
    assert r["step_cpu_s"] >= 0 and r["compile_cpu_s"] > 0
    assert r["peak_rss_gb"] > 0
    with pytest.raises(ValueError, match="steps must be >= 1"):
        common.time_step(lambda: 0, step, lambda s: (s, 1.0), steps=0)


def test_merge_replaces_rows_by_method_and_size(tmp_path):
    out = _write(
        tmp_path / "suite.json",
        dict(_suite([_row("darts_1st", "tiny", 1.0, 1.0, 1.0)]), child_env={"xla_flags": ""}),
    )
    killed = dict(method="darts_1st", size="paper", error="killed: ran past the 9 s limit")
    first = _write(tmp_path / "a.json", _suite([killed]))
    second = _write(tmp_path / "b.json", _suite([_row("darts_1st", "paper", 2.0, 3.0, 4.0)]))
    bench_suite.main(["--out", out, "--merge", first, second])
    merged = compare.load(out)
    assert [(r["method"], r["size"], r.get("step_s")) for r in merged["results"]] == [
        ("darts_1st", "tiny", 1.0),
        ("darts_1st", "paper", 3.0),
    ]
    assert merged["child_env"] == {"xla_flags": ""} and merged["merged"] == [first, second]
    # the machine is the files' (here "test cpu"), not the one that merged them
    assert merged["cpu_model"] == "test cpu" and merged["jax"] == "0"
    other = _write(tmp_path / "c.json", _suite([killed], device="NVIDIA H200"))
    with pytest.raises(SystemExit):
        bench_suite.main(["--out", out, "--merge", other])
    with pytest.raises(ValueError, match="another machine .*device: 'NVIDIA H200' vs None"):
        bench_suite.merge(out, [other])


def test_child_env_with_jobs_shares_a_step_lock_and_does_not_preallocate():
    env = bench_suite.child_env({}, jobs=2, lock_path="/tmp/x.lock")
    assert env[common.STEP_LOCK_VAR] == "/tmp/x.lock"
    assert env["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false"
    # the caller's own choice stays; one job takes no lock even if the parent had one
    kept = bench_suite.child_env({"XLA_PYTHON_CLIENT_PREALLOCATE": "true"}, jobs=3, lock_path="l")
    assert kept["XLA_PYTHON_CLIENT_PREALLOCATE"] == "true"
    alone = bench_suite.child_env({common.STEP_LOCK_VAR: "/tmp/x.lock"})
    assert common.STEP_LOCK_VAR not in alone and "XLA_PYTHON_CLIENT_PREALLOCATE" not in alone
    with pytest.raises(ValueError, match="lock_path"):
        bench_suite.child_env({}, jobs=2)


def test_step_lock_keeps_the_timed_sections_of_two_processes_apart(tmp_path):
    code = (
        "import sys, time; sys.path.insert(0, sys.argv[1]); import common\n"
        "with common.step_lock() as waited:\n"
        "    t0 = time.time(); time.sleep(0.6); t1 = time.time()\n"
        "print(t0, t1, waited)\n"
    )
    env = dict(os.environ, **{common.STEP_LOCK_VAR: str(tmp_path / "lock")})
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, bench_suite.HERE], stdout=subprocess.PIPE, env=env
        )
        for _ in range(2)
    ]
    (a0, a1, wa), (b0, b1, wb) = sorted(
        tuple(map(float, p.communicate()[0].split())) for p in procs
    )
    assert a1 <= b0  # the second entered only after the first left
    assert max(wa, wb) >= 0.3  # one of them waited for the other
    os.environ.pop(common.STEP_LOCK_VAR, None)
    with common.step_lock() as waited:  # no lock file named: a no-op
        assert waited == 0.0


def test_jobs_measure_every_row_and_write_each(tmp_path, monkeypatch):
    locks = []

    def fake_child(script, args, env, **kw):
        bench, size = args[args.index("--child") + 1].split(":")
        locks.append(env.get(common.STEP_LOCK_VAR))
        return _row(bench, size, 1.0, 2.0, 3.0)

    monkeypatch.setattr(bench_suite, "run_child", fake_child)
    out = str(tmp_path / "suite.json")
    only = ["--sizes", "tiny", "--only", "darts_1st,rarts,asmnas"]
    bench_suite.main(["--out", out, "--jobs", "2", *only])
    data = compare.load(out)
    assert sorted(r["method"] for r in data["results"]) == ["asmnas", "darts_1st", "rarts"]
    assert data["child_env"]["jobs"] == 2
    assert len(set(locks)) == 1 and locks[0] is not None  # one lock shared by all rows
    locks.clear()
    bench_suite.main(["--out", out, *only])
    assert locks == [None] * 3  # one row at a time: no lock
    with pytest.raises(SystemExit):
        bench_suite.main(["--out", out, "--jobs", "0"])


# --------------------------------------------------------------- vs_reference.py

#: the DARTS code's cnn/ folder, for the tests that import it (skipped where it is absent)
REFERENCE_DIR = os.environ.get(
    "JAXNAS_DARTS_REFERENCE",
    os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared")
    + "/peers/darts/cnn",
)
#: module names the reference's files define (removed from sys.modules after a test)
_REFERENCE_MODULES = ("model_search", "architect", "model", "operations", "genotypes", "utils")


@pytest.fixture
def fake_reference(tmp_path):
    """A folder with the reference's file names (empty files): enough for the checks."""
    d = tmp_path / "darts" / "cnn"
    d.mkdir(parents=True)
    for name in vs_reference.REFERENCE_FILES:
        (d / name).write_text("")
    return d


@pytest.fixture
def reference(monkeypatch):
    """The reference folder, imported from; what importing it adds to sys.modules,
    sys.path and torch is undone afterwards."""
    if not os.path.isfile(os.path.join(REFERENCE_DIR, "model_search.py")):
        pytest.skip(f"no DARTS reference code at {REFERENCE_DIR} (set JAXNAS_DARTS_REFERENCE)")
    monkeypatch.setattr(sys, "path", list(sys.path))
    before = set(sys.modules)
    yield os.path.abspath(REFERENCE_DIR)
    for name in set(sys.modules) - before:
        if name in _REFERENCE_MODULES or name.startswith("torchvision"):
            del sys.modules[name]


def _main_error(argv, capsys) -> str:
    assert vs_reference.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err  # one line
    return err


def test_vs_reference_rejects_bad_arguments_in_one_line(tmp_path, fake_reference, capsys):
    missing = str(tmp_path / "nowhere")
    assert "no such directory" in _main_error(["--reference-dir", missing], capsys)
    empty = tmp_path / "empty"
    empty.mkdir()
    err = _main_error(["--reference-dir", str(empty)], capsys)
    assert "not the DARTS code's cnn/ folder" in err and "model_search.py" in err
    ref = ["--reference-dir", str(fake_reference)]
    err = _main_error([*ref, "--rows", "search1-proto,search3-huge"], capsys)
    assert "unknown row 'search3-huge'" in err and "retrain-cifar" in err
    assert "give one" in _main_error([*ref, "--quick", "--rows", "retrain-cifar"], capsys)
    assert "--steps must be >= 1" in _main_error([*ref, "--steps", "0"], capsys)
    assert "--threads must be in" in _main_error([*ref, "--threads", "100000"], capsys)


def test_vs_reference_rows_and_reference_dir_resolution(fake_reference):
    assert vs_reference.parse_rows(None, quick=True) == ["search1-proto", "search2-proto"]
    assert vs_reference.parse_rows(None, quick=False) == list(vs_reference.ROWS)
    # the order given, each row once
    assert vs_reference.parse_rows("retrain-cifar,search1-proto,retrain-cifar", False) == [
        "retrain-cifar",
        "search1-proto",
    ]
    # a checkout of the whole repository is found through its cnn/ folder
    root = str(fake_reference.parent)
    assert vs_reference.resolve_reference_dir(root) == str(fake_reference)
    # the rows' sizes are the issue's (C, cells, batch)
    sizes = {r: vs_reference.row_spec(r) for r in vs_reference.ROWS}
    got = {r: (s["init_channels"], s["layers"], s["batch"]) for r, s in sizes.items()}
    assert got == {
        "search1-proto": (8, 5, 16),
        "search1-paper": (16, 8, 64),
        "search2-proto": (8, 5, 16),
        "search2-paper": (16, 8, 64),
        "retrain-cifar": (36, 20, 96),
    }
    assert all(s["input_shape"] == [32, 32, 3] for s in sizes.values())


def test_vs_reference_hparams_are_jaxnas_defaults():
    """The reference's train scripts' defaults, replayed by the benchmark, are the values
    jaxnas' default configs use: the two sides run the same optimisation."""
    from jaxnas.config import default_config

    s, o = vs_reference.SEARCH_HPARAMS, default_config("darts").optim
    assert (s["lr"], s["momentum"], s["weight_decay"], s["grad_clip"]) == (
        o.w_lr,
        o.w_momentum,
        o.w_weight_decay,
        o.grad_clip,
    )
    assert (s["arch_lr"], s["arch_betas"], s["arch_weight_decay"]) == (
        o.a_lr,
        (o.a_beta1, o.a_beta2),
        o.a_weight_decay,
    )
    r, t = vs_reference.RETRAIN_HPARAMS, default_config("train")
    assert (r["lr"], r["momentum"], r["weight_decay"], r["grad_clip"]) == (
        t.optim.lr,
        t.optim.momentum,
        t.optim.weight_decay,
        t.optim.grad_clip,
    )
    assert (r["auxiliary_weight"], r["drop_path_prob"]) == (
        t.model.auxiliary_weight,
        t.model.drop_path_prob,
    )
    assert t.model.auxiliary and t.model.genotype == "DARTS_V2"


def _fake_side(side: str, row: str, step_s: float, rss: float, **kw) -> dict:
    return dict(side=side, row=row, init_s=1.0, first_step_s=2 * step_s, step_s=step_s,
                step_cpu_s=step_s / 2, peak_rss_gb=rss, peak_device_gb=None, **kw)  # fmt: skip


def test_vs_reference_json_has_both_sides_and_ratio_jaxnas_over_reference(
    tmp_path, fake_reference, monkeypatch, capsys
):
    """The whole command with fake children: one JSON, both sides per row, the ratio."""
    calls = []

    def fake_child(script, args, env, **kw):
        side, row = args[args.index("--child") + 1].split(":")
        calls.append((side, row, env["JAX_PLATFORMS"]))
        if (side, row) == ("jaxnas", "search2-proto"):
            return {"error": "killed: ran past the 9 s limit", "observed_peak_gb": 7.0}
        if side == "reference":
            step = {"search1-proto": 2.0, "search2-proto": 5.0}[row]
            return _fake_side(side, row, step, 1.0, torch="2.13.0", device="cpu", shims=["x"])
        return _fake_side(side, row, 0.5, 3.0, compile_s=30.0, device="cpu", backend="cpu",
                          jax="0.0")  # fmt: skip

    monkeypatch.setattr(vs_reference, "run_child", fake_child)
    monkeypatch.setattr(
        vs_reference, "machine", lambda: dict(cpu_model="test cpu", loadavg=[1.0, 1.0, 1.0])
    )
    monkeypatch.setenv("JAX_PLATFORMS", "")  # main sets it for itself: restored here
    out = tmp_path / "vs.json"
    argv = ["--reference-dir", str(fake_reference), "--quick", "--steps", "2"]
    assert vs_reference.main([*argv, "--out", str(out), "--note", "loaded machine"]) == 0
    # the reference rows first (alone), then jaxnas', all on the CPU
    assert calls == [
        ("reference", "search1-proto", "cpu"),
        ("reference", "search2-proto", "cpu"),
        ("jaxnas", "search1-proto", "cpu"),
        ("jaxnas", "search2-proto", "cpu"),
    ]
    data = json.loads(out.read_text())
    assert data["tool"] == vs_reference.TOOL and data["notes"] == "loaded machine"
    assert data["cpu_model"] == "test cpu" and data["torch"] == "2.13.0"
    assert data["loadavg_start"] == [1.0, 1.0, 1.0] and len(data["loadavg_end"]) == 3
    assert data["threads_per_side"] == len(os.sched_getaffinity(0)) and data["steps"] == 2
    first, second = data["results"]
    assert first["row"] == "search1-proto" and first["order"] == "first"
    assert first["reference"]["step_s"] == 2.0 and first["jaxnas"]["step_s"] == 0.5
    assert first["ratio"]["step_s"] == 0.25  # jaxnas / reference
    assert first["ratio"]["peak_rss_gb"] == 3.0 and first["ratio"]["first_step_s"] == 0.25
    assert first["ratio"]["peak_device_gb"] is None  # no device memory on a CPU
    assert first["jaxnas_compile_s"] == 30.0 and first["reference_step_s"] == 2.0
    # a failed side: its error kept, no ratios
    assert second["jaxnas"]["error"].startswith("killed") and second["reference"]["step_s"] == 5
    assert set(second["ratio"].values()) == {None}
    text = capsys.readouterr().out
    assert "| search1-proto | (8, 5, 16) | 2 | 0.5 | 0.25x |" in text
    assert "jaxnas: killed: ran past the 9 s limit" in text


def test_vs_reference_ratio_needs_two_positive_numbers():
    assert vs_reference.ratio(1.0, 4.0) == 0.25
    assert vs_reference.ratio(1.0, 0.0) is None
    assert vs_reference.ratio(None, 2.0) is None and vs_reference.ratio(1.0, None) is None
    assert vs_reference.ratio(True, 2.0) is None


def test_vs_reference_gives_both_sides_the_same_numbers(monkeypatch):
    """The reference's batch is the one jaxnas' benchmark draws, transposed to NCHW."""
    import numpy as np

    seen = {}

    def fake_time_step(init, step, args, steps):
        seen["batch"] = args(None)[1]
        return {}

    monkeypatch.setattr(vs_reference.bench_supernet, "time_step", fake_time_step)
    spec = vs_reference.row_spec("search1-proto")
    cfg = vs_reference.jaxnas_search_config("search1-proto")
    vs_reference.bench_supernet.search_row(cfg, tuple(spec["input_shape"]), spec["batch"], 1)
    x, y = (np.asarray(v) for v in seen["batch"])
    xr, yr = vs_reference.make_batch(spec, "NCHW")
    assert xr.shape == (16, 3, 32, 32) and x.shape == (16, 32, 32, 3)
    np.testing.assert_array_equal(xr, x.transpose(0, 3, 1, 2))
    np.testing.assert_array_equal(yr, y)
    with pytest.raises(ValueError, match="layout"):
        vs_reference.make_batch(spec, "HWCN")


def test_reference_genotype_and_primitives_are_jaxnas(reference):
    """DARTS_V2 and the op list of the reference's genotypes.py are jaxnas' (no torch)."""
    sys.path.insert(0, reference)
    import genotypes

    from jaxnas.genotype import DARTS_V2
    from jaxnas.ops import DARTS_PRIMITIVES

    assert tuple(genotypes.PRIMITIVES) == tuple(DARTS_PRIMITIVES)
    g = genotypes.DARTS_V2
    ref = dict(normal=g.normal, normal_concat=g.normal_concat, reduce=g.reduce,
               reduce_concat=g.reduce_concat)  # fmt: skip
    mine = DARTS_V2.to_darts_dict()
    assert {k: [list(p) if isinstance(p, tuple) else p for p in v] for k, v in ref.items()} == {
        k: list(v) for k, v in mine.items()
    }


@pytest.fixture
def reference_cpu(reference, monkeypatch):
    """``(torch, the reference's modules)`` set up as the benchmark's CPU child does, with
    one thread (OpenMP's spinning threads make a forward crawl on a loaded machine); the
    patches to torch are undone afterwards."""
    import warnings

    torch = pytest.importorskip("torch")
    monkeypatch.setattr(torch.Tensor, "cuda", torch.Tensor.cuda)
    monkeypatch.setattr(torch.nn.Module, "cuda", torch.nn.Module.cuda)
    monkeypatch.setattr(torch.cuda, "FloatTensor", torch.cuda.FloatTensor)
    threads = torch.get_num_threads()
    vs_reference.setup_torch("cpu", 1)
    with warnings.catch_warnings():
        mods, _ = vs_reference.load_reference(reference, torch, "cpu")
    yield torch, mods
    torch.set_num_threads(threads)


@pytest.mark.parametrize("row", ["search1-proto", "search1-paper", "retrain-cifar"])
def test_reference_and_jaxnas_see_identical_inputs(row, reference_cpu, monkeypatch):
    """Per row: the batch of the reference's step is jaxnas' batch (NCHW vs NHWC, the same
    numbers) and its network has jaxnas' C and cells; for the small supernet, its stem
    sees that batch and its alphas have jaxnas' shape.  No step is compiled or run."""
    import numpy as np

    torch, mods = reference_cpu
    ref = vs_reference.build_reference(row, mods, torch, "cpu")
    net, (x, y) = ref["model"], ref["batch"]
    spec = vs_reference.row_spec(row)
    seen = {}

    def fake_time_step(init, step, args, steps):
        seen.update(init=init, batch=args(None)[1])
        return dict(step_s=1.0, metrics={"loss": 0.0})

    if spec["kind"] == "search":
        monkeypatch.setattr(vs_reference.bench_supernet, "time_step", fake_time_step)
        cfg = vs_reference.jaxnas_search_config(row)
        vs_reference.bench_supernet.search_row(cfg, tuple(spec["input_shape"]), spec["batch"], 1)
        assert (net._C, len(net.cells)) == (cfg.model.init_channels, cfg.model.layers)
        assert cfg.search.order == "first" and ref["architect"] is not None
    else:
        monkeypatch.setattr(vs_reference.bench_train, "time_step", fake_time_step)
        r = vs_reference.bench_train.measure(spec["net"], 1, "float32")
        assert (r["init_channels"], r["layers"], r["auxiliary"]) == (36, 20, True)
        assert len(net.cells) == 20 and net._auxiliary and net.drop_path_prob == 0.2
    jx, jy = (np.asarray(v) for v in seen["batch"])
    assert tuple(x.shape) == (spec["batch"], 3, 32, 32)
    np.testing.assert_array_equal(x.numpy(), jx.transpose(0, 3, 1, 2))
    np.testing.assert_array_equal(y.numpy(), jy)
    if row == "search1-proto":  # one forward of the small supernet: cheap enough
        import jax

        shapes = []
        net.stem.register_forward_pre_hook(lambda m, inp: shapes.append(tuple(inp[0].shape)))
        with torch.no_grad():
            assert net(x).shape == (16, 10)
        assert shapes == [(16, 3, 32, 32)]
        # the same architecture variables: one row of alphas per edge, one column per op
        arch = jax.eval_shape(seen["init"]).arch
        assert tuple(net.alphas_normal.shape) == arch["normal"].shape == (14, 8)
        assert tuple(net.alphas_reduce.shape) == arch["reduce"].shape


def test_trace_summary_counts_each_process_and_stream(tmp_path):
    """A Perfetto file (Chrome trace events) as jax.profiler writes it: per process and
    per thread the event count, summed duration and span, in milliseconds."""
    import gzip

    run = tmp_path / "plugins" / "profile" / "2026_01_01"
    run.mkdir(parents=True)
    meta = [
        dict(ph="M", pid=1, name="process_name", args=dict(name="/host:CPU")),
        dict(ph="M", pid=1, tid=10, name="thread_name", args=dict(name="python")),
        dict(ph="M", pid=2, name="process_name", args=dict(name="/device:GPU:0")),
        dict(ph="M", pid=2, tid=7, name="thread_name", args=dict(name="Stream #7")),
    ]
    x = lambda pid, tid, ts, dur: dict(ph="X", pid=pid, tid=tid, ts=ts, dur=dur, name="k")
    # three kernels on one stream with gaps, one on another; two nested host events
    events = [x(2, 7, 0, 1000), x(2, 7, 3000, 1000), x(2, 7, 9000, 1000), x(2, 8, 500, 500)]
    events += [x(1, 10, 0, 10000), x(1, 10, 100, 200)]
    with gzip.open(run / "perfetto_trace.json.gz", "wt") as f:
        json.dump(dict(traceEvents=meta + events), f)
    s = vs_reference.summarize_trace(str(tmp_path))
    gpu = s["/device:GPU:0"]
    assert (gpu["events"], gpu["sum_dur_ms"], gpu["span_ms"]) == (4, 3.5, 10.0)
    assert gpu["threads"]["Stream #7"] == dict(events=3, sum_dur_ms=3.0, span_ms=10.0)
    assert gpu["threads"]["8"] == dict(events=1, sum_dur_ms=0.5, span_ms=0.5)  # unnamed
    assert list(gpu["threads"]) == ["Stream #7", "8"]  # by event count
    host = s["/host:CPU"]["threads"]["python"]
    assert host == dict(events=2, sum_dur_ms=10.2, span_ms=10.0)
    with pytest.raises(ValueError, match="no perfetto_trace"):
        vs_reference.summarize_trace(str(tmp_path / "plugins" / "nothing"))
