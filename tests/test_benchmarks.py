"""The benchmark suite's plumbing (benchmarks/): comparison table, argument checks, the
machine description, the child-process watchdog and the timing helper.  Nothing here
asserts a time."""

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
