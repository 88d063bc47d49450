"""The import contract (``[tool.importlinter]`` in pyproject.toml) holds, and catches breaks.

``lint-imports`` runs in a subprocess, as ``make lint`` runs it: once on this checkout
(exit 0), once on a copy of the package with forbidden imports planted, one per
contract, where it must fail and name each broken contract and the planted import.
``PYTHONPATH`` points it at the tree it checks (an editable install would otherwise
resolve ``jaxnas`` to wherever it was installed from).
"""

import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LINT = os.path.join(os.path.dirname(sys.executable), "lint-imports")

LAYERS = "jaxnas layers: cli > runs > loop > methods > models > spaces > core"
CORE_DEPS = "optim, curvature and bilevel need jax, optax and numpy only"
EXTRAS = "the extras are imported only through jaxnas.optional.require"
CYCLES = "no import cycles between the modules of a package"

pytestmark = pytest.mark.skipif(
    not os.path.exists(LINT), reason="import-linter is not installed (pip install -e '.[dev]')"
)


def _lint(root) -> subprocess.CompletedProcess:
    root = os.fspath(root)
    path = os.pathsep.join([root, *filter(None, [os.environ.get("PYTHONPATH")])])
    return subprocess.run(
        [LINT, "--no-logo", "--no-cache", os.path.join(root, "pyproject.toml")],
        cwd=root,
        env=dict(os.environ, PYTHONPATH=path),
        capture_output=True,
        text=True,
        timeout=120,
    )


def _plant(package: str, module: str, line: str) -> None:
    path = os.path.join(package, *module.split(".")[1:])
    path = path + ".py" if os.path.isfile(path + ".py") else os.path.join(path, "__init__.py")
    with open(path, "a", encoding="utf-8") as f:
        f.write(f"\n{line}  # planted by tests/test_layers.py\n")


def test_the_import_contract_holds():
    r = _lint(ROOT)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    for name in (LAYERS, CORE_DEPS, EXTRAS, CYCLES):
        assert f"{name} KEPT" in out, out


def test_a_planted_violation_breaks_the_contract(tmp_path):
    """The core importing the command line breaks the layers (and makes a cycle); then,
    on a clean copy again, flax in jaxnas.optim, an extra imported directly and a cycle
    inside jaxnas.search break the other three contracts and leave the layers whole."""
    package = tmp_path / "jaxnas"
    shutil.copytree(
        os.path.join(ROOT, "jaxnas"), package, ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copy(os.path.join(ROOT, "pyproject.toml"), tmp_path / "pyproject.toml")
    assert _lint(tmp_path).returncode == 0  # the copy holds before anything is planted

    ops = package / "ops.py"
    clean = ops.read_text(encoding="utf-8")
    _plant(package, "jaxnas.ops", "import jaxnas.cli")
    r = _lint(tmp_path)
    out = r.stdout + r.stderr
    assert r.returncode != 0, out
    assert f"{LAYERS} BROKEN" in out, out
    assert "jaxnas.ops -> jaxnas.cli" in out, out
    assert f"{CORE_DEPS} KEPT" in out and f"{EXTRAS} KEPT" in out, out

    ops.write_text(clean, encoding="utf-8")
    _plant(package, "jaxnas.optim.prox", "import flax")
    _plant(package, "jaxnas.plots", "import matplotlib")
    _plant(package, "jaxnas.search.darts", "import jaxnas.search.prdarts")
    r = _lint(tmp_path)
    out = r.stdout + r.stderr
    assert r.returncode != 0, out
    assert f"{LAYERS} KEPT" in out, out
    for name in (CORE_DEPS, EXTRAS, CYCLES):
        assert f"{name} BROKEN" in out, out
    assert "jaxnas.optim.prox -> flax" in out, out
    assert "jaxnas.plots -> matplotlib" in out, out
    assert "No cycles are allowed in jaxnas.search." in out, out
