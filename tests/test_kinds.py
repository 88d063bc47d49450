"""The config kinds' table (``jaxnas.config.KINDS``) and the command line's dispatch by it:
every kind names importable functions, and a kind added to the table is searched, plotted
and evaluated by ``jaxnas`` without an edit of ``jaxnas.cli``."""

from __future__ import annotations

import importlib
import json
import os
import sys
import types

import ml_collections
import pytest

from jaxnas import cli
from jaxnas import config as config_lib


def test_every_kind_names_a_command_and_importable_functions():
    """Each line: a known subcommand, a module with ``default_config``, and its driver,
    replot and (where given) evaluator import as callables; ``METHODS`` is its modules."""
    assert set(config_lib.KINDS) == set(config_lib.METHODS)
    for name, kind in config_lib.KINDS.items():
        assert kind.command in config_lib.COMMANDS, name
        assert config_lib.METHODS[name] == kind.module
        assert callable(config_lib.method_module(name).default_config)
        for path in (kind.run, kind.replot, kind.evaluate):
            if path:
                module, _, function = path.partition(":")
                assert callable(getattr(importlib.import_module(module), function)), path
    assert {m for m, k in config_lib.KINDS.items() if k.evaluate} == {"train", "train_rnn"}


@pytest.fixture
def fake_kind(monkeypatch):
    """A kind ``fake`` registered by one table line, its functions recording their calls."""
    calls = []
    mod = types.ModuleType("fake_kind_for_test")
    mod.default_config = lambda: ml_collections.ConfigDict({"search": {"epochs": 1}})

    def run(config, workdir, *, resume, progress):
        calls.append(("run", config.method, workdir))
        os.makedirs(workdir, exist_ok=True)
        with open(os.path.join(workdir, "config.json"), "w") as f:
            f.write(config_lib.config_to_json(config))
        path = os.path.join(workdir, "genotype.json")
        return {"genotype": "g", "genotype_json": path, "metrics": "m"}

    def replot(workdir):
        calls.append(("replot", workdir))
        return {"picture": os.path.join(workdir, "p.png")}

    def evaluate(checkpoint, *, overrides, which):
        calls.append(("evaluate", checkpoint, which))
        return {"test/ppl": 2.0, "test/loss": 0.5, "valid/ppl": 3.0, "valid/loss": 0.7}

    mod.run, mod.replot, mod.evaluate = run, replot, evaluate
    monkeypatch.setitem(sys.modules, mod.__name__, mod)
    kind = config_lib.Kind(
        mod.__name__,
        "search",
        f"{mod.__name__}:run",
        replot=f"{mod.__name__}:replot",
        evaluate=f"{mod.__name__}:evaluate",
    )
    monkeypatch.setitem(config_lib.KINDS, "fake", kind)
    monkeypatch.setitem(config_lib.METHODS, "fake", mod.__name__)
    return calls


def test_a_new_kind_needs_no_cli_edit(fake_kind, tmp_path, capsys):
    """``search``, ``plot`` and ``eval`` run the functions the kind's line names."""
    cfg = tmp_path / "fake.py"
    cfg.write_text("def get_config():\n    return {'method': 'fake'}\n")
    wd = str(tmp_path / "wd")
    assert cli.main(["search", "--config", str(cfg), "--workdir", wd, "--no-progress"]) == 0
    assert fake_kind[-1] == ("run", "fake", wd)
    assert "genotype:  g" in capsys.readouterr().out
    assert cli.main(["plot", "--workdir", wd]) == 0
    assert fake_kind[-1] == ("replot", wd)
    assert "picture:" in capsys.readouterr().out
    assert cli.main(["eval", "--checkpoint", wd, "--which", "latest", "--json"]) == 0
    assert fake_kind[-1] == ("evaluate", wd, "latest")
    assert json.loads(capsys.readouterr().out)["test/ppl"] == 2.0
    # a retraining command refuses it, naming the kinds it takes
    assert cli.main(["train", "--config", str(cfg), "--workdir", str(tmp_path / "t")]) == 2
    err = capsys.readouterr().err
    assert "'fake' search config" in err and "'train' or 'train_rnn'" in err


def test_eval_of_a_kind_without_evaluator(tmp_path, capsys):
    """A search workdir is not evaluable: one line naming its kind and the ones that are."""
    wd = tmp_path / "search"
    wd.mkdir()
    (wd / "config.json").write_text(json.dumps({"method": "darts"}))
    assert cli.main(["eval", "--checkpoint", str(wd)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'darts' run" in err[0] and "train or train_rnn" in err[0]
