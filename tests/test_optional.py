"""The light install: the core imports without the extras; a missing extra is one line."""

import json
import os
import subprocess
import sys

import pytest

from jaxnas import optional
from jaxnas.optional import EXTRAS, MissingExtraError, require

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# What `pip install jaxnas` does not install (tensorflow: tensorflow-datasets may pull it).
BLOCKED = ("tensorflow_datasets", "tensorflow", "matplotlib", "sklearn", "tensorboardX", "torch")

_SCRIPT = """
import importlib, importlib.abc, json, pkgutil, sys

BLOCKED = set(sys.argv[1].split(","))

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked)", name=name)
        return None

sys.meta_path.insert(0, Block())

import jaxnas
import jaxnas.curvature
import jaxnas.optim
import jaxnas.bilevel.hypergrad

failed = {}
for m in pkgutil.walk_packages(jaxnas.__path__, "jaxnas."):
    try:
        importlib.import_module(m.name)
    except Exception as e:
        failed[m.name] = f"{type(e).__name__}: {e}"

errors = {}
from jaxnas import data, plots
try:
    plots.plot_curves([{"epoch": 1, "train/loss": 1.0}], "unused.png")
except Exception as e:
    errors["plot_curves"] = f"{type(e).__name__}: {e}"
try:
    data.load("digits", "train")
except Exception as e:
    errors["digits"] = f"{type(e).__name__}: {e}"

loaded = sorted(m for m in sys.modules if m.partition(".")[0] in BLOCKED)
print(json.dumps({"failed": failed, "errors": errors, "loaded": loaded}))
"""


def _run_blocked(blocked):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    out = subprocess.run(
        [sys.executable, "-c", _SCRIPT, ",".join(blocked)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_core_imports_with_the_optional_packages_blocked():
    """``jaxnas``, ``jaxnas.optim``, ``jaxnas.curvature`` and ``jaxnas.bilevel.hypergrad``
    (and every other module but the ImageNet loader) import in a process where the
    extras' packages cannot be imported; using one gives the one-line error."""
    res = _run_blocked((*BLOCKED, "PIL"))
    assert res["loaded"] == []
    assert res["failed"] == {
        "jaxnas.data_imagenet": (
            "MissingExtraError: the ImageNet loader needs pillow: pip install 'jaxnas[data]'"
        )
    }
    assert res["errors"] == {
        "plot_curves": "MissingExtraError: plotting needs matplotlib: pip install 'jaxnas[viz]'",
        "digits": (
            "DatasetNotFoundError: the DIGITS dataset needs scikit-learn: "
            "pip install 'jaxnas[data]'"
        ),
    }


@pytest.mark.parametrize("root", sorted(EXTRAS))
def test_require_names_the_extra_in_one_line(monkeypatch, root):
    for name in [m for m in sys.modules if m.partition(".")[0] == root]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, root, None)  # import of `root` fails as if not installed
    package, extra = EXTRAS[root]
    with pytest.raises(MissingExtraError) as e:
        require(f"{root}.sub", "this feature")
    assert str(e.value) == f"this feature needs {package}: pip install 'jaxnas[{extra}]'"
    assert isinstance(e.value, ImportError)


def test_require_returns_the_module_and_keeps_other_import_errors(monkeypatch, tmp_path):
    assert require("matplotlib.figure", "plotting").Figure is not None
    # an installed package whose own dependency is missing: that error, unchanged
    (tmp_path / "jaxnas_fake_extra.py").write_text("import jaxnas_fake_missing_dependency\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(optional.EXTRAS, "jaxnas_fake_extra", ("fake", "fake"))
    with pytest.raises(ModuleNotFoundError) as e:
        require("jaxnas_fake_extra", "x")
    assert e.value.name == "jaxnas_fake_missing_dependency"
    assert not isinstance(e.value, MissingExtraError)
    with pytest.raises(ValueError, match="not an optional dependency"):
        require("numpy", "x")


def test_extras_table_matches_pyproject():
    tomllib = pytest.importorskip("tomllib")
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        project = tomllib.load(f)["project"]

    def names(reqs):
        return {r.split(">")[0].split("=")[0].split("[")[0].strip().lower() for r in reqs}

    extras = project["optional-dependencies"]
    assert names(project["dependencies"]) == {
        "jax", "flax", "optax", "chex", "orbax-checkpoint", "ml-collections", "numpy", "tqdm"
    }  # fmt: skip
    for package, extra in EXTRAS.values():
        assert package.lower() in names(extras[extra]), (package, extra)
    assert extras["all"] == ["jaxnas[data,viz]"]  # everything but torch (GBs)
