"""Bad input to the ``jaxnas`` command: one line, exit status 2, nothing overwritten.

Every row of :data:`CASES` is one bad command line (issue 23 item 2: the accepted
nonsense, the tracebacks where one line was promised, the failed commands that destroyed
results, and the bad inputs that already got one clear line, kept here so that they keep
doing so). For each row the test checks that

* ``jaxnas.cli.main`` returns ``EXIT_ERROR`` (2) and prints nothing on stdout;
* stderr is exactly one line, ``jaxnas: error: ...``, with no traceback;
* the line names what to fix (the key, flag or path: the row's ``names``);
* nothing was compiled or traced: bad input fails at validation, before any JAX work;
* a row on an existing workdir leaves every file that was there byte-identical (and a
  row on a fresh workdir that fails at validation does not even create it).

Rows that need the real Fashion-MNIST files are skipped when they are absent; a row on a
read-only workdir is skipped where the user (root) can write to it anyway.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import os
import pathlib
import shlex
import shutil

import jax
import pytest

from jaxnas import cli, data
from jaxnas.config import METHODS, ConfigError, config_to_json, load_config

ROOT = pathlib.Path(__file__).resolve().parents[1]
FMNIST = os.path.join(data.FMNIST_DEFAULT_DIR, "train-images-idx3-ubyte.gz")

#: placeholders of the command lines and names (``{tmp}`` is the test's folder)
PATHS = {
    "darts": str(ROOT / "configs/darts_fmnist_tiny.py"),
    "eval": str(ROOT / "configs/eval_fmnist_small.py"),
    "rnn": str(ROOT / "configs/eval_rnn_tiny.py"),
    "width": str(ROOT / "configs/width_fmnist_tiny.py"),
    "bayes": str(ROOT / "configs/bayes_group_lenet300_fmnist.py"),
    "configs": str(ROOT / "configs"),
}


@dataclasses.dataclass(frozen=True)
class Case:
    """One bad command line.

    Attributes:
      id: the test id.
      argv: the arguments of ``jaxnas`` (``shlex`` syntax; ``{tmp}`` and :data:`PATHS`
        placeholders).
      names: what the error line must contain (same placeholders).
      workdir: an existing workdir (relative to ``{tmp}``) whose files must be
        byte-identical afterwards.
      fresh: a workdir (relative to ``{tmp}``) that the command names but that must not
        be created (it fails at validation, before the workdir is touched).
      log_may_grow: the row fails in the experiment's setup, after the loop opened
        ``log.txt``: that file may get its ``not started: ...`` line appended (see the
        module docstring of jaxnas.loop); every other file stays byte-identical.
      fmnist: needs the real Fashion-MNIST files.
    """

    id: str
    argv: str
    names: tuple[str, ...]
    workdir: str | None = None
    fresh: str | None = "wd"
    log_may_grow: bool = False
    fmnist: bool = False


def _search(extra: str, *names: str, **kw) -> Case:
    return Case(
        kw.pop("id"), f"search --config {{darts}} --workdir {{tmp}}/wd {extra}", names, **kw
    )


def _train(extra: str, *names: str, **kw) -> Case:
    return Case(kw.pop("id"), f"train --config {{eval}} --workdir {{tmp}}/wd {extra}", names, **kw)


CASES: list[Case] = [
    # ---- config files -------------------------------------------------------------------
    Case("config-missing", "search --config {tmp}/nope.py --workdir {tmp}/wd", ("nope.py",)),
    Case(
        "config-is-directory",
        "search --config {configs} --workdir {tmp}/wd",
        ("{configs}", "is a directory"),
    ),
    Case(
        "config-sys-exit-0",
        "search --config {tmp}/exit0.py --workdir {tmp}/wd",
        ("exit0.py", "sys.exit(0)"),
    ),
    Case(
        "config-get-config-exits",
        "search --config {tmp}/exit_in_get.py --workdir {tmp}/wd",
        ("exit_in_get.py", "sys.exit(3)"),
    ),
    Case(
        "config-syntax-error",
        "search --config {tmp}/syntax.py --workdir {tmp}/wd",
        ("syntax.py", "syntax error"),
    ),
    Case(
        "config-no-get-config",
        "search --config {tmp}/noget.py --workdir {tmp}/wd",
        ("noget.py", "get_config()"),
    ),
    Case(
        "config-returns-a-list",
        "search --config {tmp}/returns_list.py --workdir {tmp}/wd",
        ("returns_list.py", "ConfigDict"),
    ),
    Case(
        "config-get-config-raises",
        "search --config {tmp}/raises.py --workdir {tmp}/wd",
        ("raises.py", "KeyError"),
    ),
    Case(
        "config-unknown-key",
        "search --config {tmp}/badkey.py --workdir {tmp}/wd",
        ("badkey.py", "'search.epoch'", "'search.epochs'"),
    ),
    Case(
        "config-wrong-type",
        "search --config {tmp}/badtype.py --workdir {tmp}/wd",
        ("badtype.py", "'search.epochs'", "int"),
    ),
    Case(
        "config-value-for-section",
        "search --config {tmp}/section.py --workdir {tmp}/wd",
        ("section.py", "'data'", "section"),
    ),
    Case(
        "config-unknown-method",
        "search --config {tmp}/badmethod.py --workdir {tmp}/wd",
        ("badmethod.py", "'dartz'", "'darts'"),
    ),
    Case(
        "config-nan-learning-rate",
        "search --config {tmp}/nan_lr.py --workdir {tmp}/wd",
        ("nan_lr.py", "'optim.w_lr'", "nan"),
    ),
    # ---- --set overrides ----------------------------------------------------------------
    _search("--set search.epoch=1", "'search.epoch'", "'search.epochs'", id="set-mistyped-key"),
    _search("--set search.epochs=abc", "'search.epochs'", "int", id="set-wrong-type"),
    _search("--set search.epochs", "'search.epochs'", "key=value", id="set-malformed"),
    _search("--set =3", "'=3'", "empty key", id="set-empty-key"),
    _search("--set data=3", "'data'", "section", id="set-section"),
    _search("--set method=dartz", "'dartz'", "'darts'", id="set-unknown-method"),
    _search("--set optim.w_lr=nan", "'optim.w_lr'", "float", id="set-nan-learning-rate"),
    # ---- values out of range --------------------------------------------------------------
    _search("--set search.epochs=0", "'search.epochs'", ">= 1", id="search-epochs-0"),
    _search("--set search.epochs=-1", "'search.epochs'", ">= 1", id="search-epochs-negative"),
    _train("--set train.epochs=0", "'train.epochs'", ">= 1", id="train-epochs-0"),
    _search("--set data.batch_size=0", "'data.batch_size'", ">= 1", id="batch-size-0"),
    _train("--set model.init_channels=0", "'model.init_channels'", id="train-init-channels-0"),
    _search("--set model.init_channels=0", "'model.init_channels'", id="search-init-channels-0"),
    _search("--set model.layers=0", "'model.layers'", id="search-layers-0"),
    _search("--set data.crop_padding=-3", "'data.crop_padding'", ">= 0", id="crop-padding-neg"),
    _search("--set data.limit=-1", "'data.limit'", ">= 0", id="limit-negative"),
    _search("--set run.checkpoint_keep=0", "'run.checkpoint_keep'", id="checkpoint-keep-0"),
    _search("--set run.log_every_steps=-1", "'run.log_every_steps'", id="log-every-negative"),
    _search("--set data.portion=0.0", "'data.portion'", "(0, 1)", id="portion-0"),
    _search("--set data.portion=1.0", "'data.portion'", "(0, 1)", id="portion-1"),
    _search("--set data.portion=1.5", "'data.portion'", "(0, 1)", id="portion-above-1"),
    _search("--set optim.w_lr=-0.1", "'optim.w_lr'", ">= 0", id="negative-learning-rate"),
    _search("--set optim.grad_clip=-1.0", "'optim.grad_clip'", id="negative-grad-clip"),
    _search("--set search.order=third", "'search.order'", "'second'", id="search-order-third"),
    _search("--devices -1", "'run.devices'", ">= 0", id="search-devices-negative"),
    _search("--devices 64", "run.devices=64", "device(s) exist", id="search-more-devices"),
    _train("--set run.devices=2", "run.devices", "train.num_devices", id="train-run-devices"),
    _search(
        "--set search.order=second --set search.hypergradient=exactt",
        "'search.hypergradient'",
        "'exact'",
        id="search-hypergradient-typo",
    ),
    _train("--set model.drop_path_prob=1.0", "'model.drop_path_prob'", id="drop-path-1"),
    _train("--set optim.schedule=cosin", "'optim.schedule'", "'cosine'", id="train-schedule"),
    Case(
        "rnn-bptt-0",
        "train --config {rnn} --workdir {tmp}/wd --set text.bptt=0",
        ("'text.bptt'", ">= 1"),
    ),
    Case(
        "width-order-typo",
        "compress --config {width} --workdir {tmp}/wd --set search.order=rartz",
        ("'search.order'", "'rarts'"),
    ),
    Case(
        "width-finetune-epochs-negative",
        "compress --config {width} --workdir {tmp}/wd --set finetune.epochs=-1",
        ("'finetune.epochs'", ">= 0"),
    ),
    Case(
        "bayes-group-negative-lambda",
        "compress --config {bayes} --workdir {tmp}/wd --set lam=-1.0",
        ("--set lam=-1.0", "lam must be >= 0"),
    ),
    # ---- workdirs -----------------------------------------------------------------------
    Case("workdir-empty", "search --config {darts} --workdir ''", ("--workdir", "empty")),
    Case(
        "resume-missing-workdir",
        "search --config {darts} --workdir {tmp}/typo --resume",
        ("--resume", "{tmp}/typo", "does not exist"),
        fresh="typo",
    ),
    Case(
        "train-resume-missing-workdir",
        "train --config {eval} --workdir {tmp}/typo --resume",
        ("--resume", "{tmp}/typo", "does not exist"),
        fresh="typo",
    ),
    Case(
        "compress-resume-missing-workdir",
        "compress --config {width} --workdir {tmp}/typo --resume",
        ("--resume", "{tmp}/typo", "does not exist"),
        fresh="typo",
    ),
    Case(
        "workdir-is-a-file",
        "search --config {darts} --workdir {tmp}/afile",
        ("{tmp}/afile", "is a file"),
        fresh=None,
    ),
    Case(
        "workdir-read-only",
        "search --config {darts} --workdir {tmp}/readonly",
        ("{tmp}/readonly", "not writable"),
        workdir="readonly",
        fresh=None,
    ),
    Case(
        "train-resume-on-search-workdir",
        "train --config {eval} --workdir {tmp}/search --resume",
        ("{tmp}/search", "'darts'", "'train'"),
        workdir="search",
        fresh=None,
    ),
    Case(
        "train-on-search-workdir",
        "train --config {eval} --workdir {tmp}/search",
        ("{tmp}/search", "'darts'"),
        workdir="search",
        fresh=None,
    ),
    Case(
        "search-resume-bad-order-no-checkpoints",
        "search --config {darts} --workdir {tmp}/search --resume --set search.order=third",
        ("'search.order'",),
        workdir="search",
        fresh=None,
    ),
    Case(
        "search-resume-on-train-workdir",
        "search --config {darts} --workdir {tmp}/train --resume",
        ("{tmp}/train", "'train'", "'darts'"),
        workdir="train",
        fresh=None,
    ),
    Case(
        "compress-resume-on-search-workdir",
        "compress --config {width} --workdir {tmp}/search --resume",
        ("{tmp}/search", "'darts'", "'rarts-width'"),
        workdir="search",
        fresh=None,
    ),
    Case(
        "train-resume-missing-data",
        "train --config {eval} --workdir {tmp}/train --resume --set data.data_dir={tmp}/empty",
        ("{tmp}/empty", "dataset-fashion-mnist"),
        workdir="train",
        fresh=None,
        log_may_grow=True,
    ),
    # ---- data -----------------------------------------------------------------------------
    _search(
        "--set data.dataset=fashion_mnst",
        "'fashion_mnst'",
        "'fashion_mnist'",
        id="dataset",
        fresh=None,
    ),
    _train(
        "--set data.dataset=cifar11", "'cifar11'", "data.dataset", id="train-dataset", fresh=None
    ),
    _search(
        "--set data.data_dir={tmp}/empty",
        "{tmp}/empty",
        "dataset-fashion-mnist",
        id="data-missing",
        fresh=None,
    ),
    _search(
        "--set data.data_dir={tmp}/truncated",
        "{tmp}/truncated/train-images-idx3-ubyte.gz",
        "corrupt",
        "dataset-fashion-mnist",
        id="data-truncated-gz",
        fresh=None,
    ),
    _search(
        "--set data.data_dir={tmp}/garbage",
        "{tmp}/garbage/train-images-idx3-ubyte.gz",
        "corrupt",
        "dataset-fashion-mnist",
        id="data-garbage-gz",
        fresh=None,
    ),
    _search(
        "--set data.data_dir={tmp}/notidx",
        "{tmp}/notidx/train-images-idx3-ubyte.gz",
        "IDX",
        id="data-not-idx",
        fresh=None,
    ),
    _train(
        "--set data.data_dir={tmp}/truncated",
        "{tmp}/truncated/train-images-idx3-ubyte.gz",
        "corrupt",
        id="train-data-truncated-gz",
        fresh=None,
    ),
    _search(
        "--set data.batch_size=100000",
        "batch_size",
        id="batch-larger-than-data",
        fresh=None,
        fmnist=True,
    ),
    # ---- genotypes ----------------------------------------------------------------------
    _train("--genotype NOPE", "'NOPE'", "DARTS_V2", id="unknown-genotype", fresh=None),
    _train(
        "--genotype {tmp}/malformed.json",
        "malformed.json",
        id="malformed-genotype-json",
        fresh=None,
    ),
    _train(
        "--genotype {tmp}/wrong.json", "wrong.json", id="genotype-json-wrong-structure", fresh=None
    ),
    Case("summary-unknown-genotype", "summary --genotype NOPE", ("'NOPE'",), fresh=None),
    # ---- other commands and arguments -----------------------------------------------------
    Case("summary-layers-0", "summary --genotype DARTS_V2 --layers 0", ("--layers", ">= 1")),
    Case(
        "summary-init-channels-negative",
        "summary --genotype DARTS_V2 --init-channels -4",
        ("--init-channels",),
    ),
    Case("summary-layers-not-int", "summary --genotype DARTS_V2 --layers abc", ("--layers",)),
    Case(
        "compress-unknown-method",
        "compress --config {width} --workdir {tmp}/wd --method pruneit",
        ("'pruneit'", "rarts-width", "netslim", "random", "sidt", "bayes-group"),
    ),
    Case(
        "compress-method-of-other-family",
        "compress --config {width} --workdir {tmp}/wd --method bayes-group",
        ("--method bayes-group", "rarts-width"),
    ),
    Case("search-with-train-config", "search --config {eval} --workdir {tmp}/wd", ("train",)),
    Case("train-with-search-config", "train --config {darts} --workdir {tmp}/wd", ("'darts'",)),
    Case(
        "compress-with-search-config",
        "compress --config {darts} --workdir {tmp}/wd",
        ("'darts'", "compress"),
    ),
    Case("eval-not-a-workdir", "eval --checkpoint {tmp}", ("{tmp}",), fresh=None),
    Case("eval-missing-path", "eval --checkpoint {tmp}/nope", ("{tmp}/nope",), fresh=None),
    Case("plot-missing-workdir", "plot --workdir {tmp}/nope", ("{tmp}/nope",), fresh=None),
    Case("unknown-argument", "search --config {darts} --workdir {tmp}/wd --bogus", ("--bogus",)),
    Case("missing-required-argument", "search --workdir {tmp}/wd", ("--config",)),
    Case("unknown-command", "frobnicate", ("frobnicate",), fresh=None),
]


# ------------------------------------------------------------------------------ fixtures


def _write(path: pathlib.Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


_FROM_DARTS = "from jaxnas.config import default_config\n\n\ndef get_config():\n"


def _config_files(tmp: pathlib.Path) -> None:
    _write(tmp / "exit0.py", "import sys\n\nsys.exit(0)\n")
    _write(tmp / "exit_in_get.py", "import sys\n\n\ndef get_config():\n    sys.exit(3)\n")
    _write(tmp / "syntax.py", "def get_config(:\n    return {}\n")
    _write(tmp / "noget.py", "CONFIG = {'method': 'darts'}\n")
    _write(tmp / "returns_list.py", "def get_config():\n    return [1, 2]\n")
    _write(tmp / "raises.py", "def get_config():\n    return {}['missing']\n")
    _write(tmp / "badkey.py", "def get_config():\n    return {'search': {'epoch': 1}}\n")
    _write(tmp / "badtype.py", "def get_config():\n    return {'search': {'epochs': 'three'}}\n")
    _write(tmp / "section.py", "def get_config():\n    return {'data': 3}\n")
    _write(tmp / "badmethod.py", "def get_config():\n    return {'method': 'dartz'}\n")
    _write(
        tmp / "nan_lr.py",
        _FROM_DARTS + "    c = default_config('darts')\n    c.optim.w_lr = float('nan')\n"
        "    return c\n",
    )
    _write(tmp / "malformed.json", '{"normal": [["sep_conv_3x3", 0]')
    _write(tmp / "wrong.json", '{"normal": 3}')
    (tmp / "afile").write_text("not a folder\n")
    (tmp / "empty").mkdir()


def _idx_files(folder: pathlib.Path, train_images: bytes) -> None:
    """Fashion-MNIST's four files, the training images replaced by ``train_images``."""
    folder.mkdir()
    for stem in ("train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (folder / f"{stem}.gz").write_bytes(gzip.compress(b""))
    (folder / "train-images-idx3-ubyte.gz").write_bytes(train_images)


def _data_dirs(tmp: pathlib.Path) -> None:
    header = b"\x00\x00\x08\x03" + (1000).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2
    whole = gzip.compress(header + bytes(1000 * 28 * 28))
    _idx_files(tmp / "truncated", whole[: len(whole) // 3])
    _idx_files(tmp / "garbage", os.urandom(4096))
    _idx_files(tmp / "notidx", gzip.compress(b"hello, world\n"))


def _run_files(root: pathlib.Path, config_path: str, extra: dict[str, bytes]) -> None:
    """A workdir as a finished run leaves it (checkpoints aside)."""
    files = {
        "config.json": (config_to_json(load_config(config_path)) + "\n").encode(),
        "log.txt": b"00:00:00 INFO epoch 1/1 | train loss 2.3000\n",
        "metrics.jsonl": b'{"epoch": 1, "kind": "epoch", "step": 25, "train/loss": 2.3}\n',
        "summary.json": b'{"epochs": 1}\n',
        "curves.png": b"\x89PNG fake",
        "tb/events.out.tfevents.0.host": b"fake events",
        **extra,
    }
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)


def _workdirs(tmp: pathlib.Path) -> None:
    # a finished DARTS search whose checkpoints were removed (rm -r W/checkpoints)
    genotype = json.dumps({"normal": [["sep_conv_3x3", 0]], "normal_concat": [2]}).encode()
    _run_files(
        tmp / "search",
        PATHS["darts"],
        {
            "genotype.json": genotype,
            "genotype_normal.png": b"\x89PNG fake",
            "alphas/epoch_000.npz": b"fake npz",
            "alphas/meta.json": b'{"primitives": []}',
            "alphas.png": b"\x89PNG fake",
        },
    )
    _run_files(tmp / "train", PATHS["eval"], {"genotype.json": genotype, "best.json": b"{}"})
    (tmp / "readonly").mkdir()
    (tmp / "readonly" / "keep.txt").write_text("keep\n")


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> pathlib.Path:
    """The bad files every row may name (made once; rows that write get their own copy)."""
    tmp = tmp_path_factory.mktemp("bad_input")
    _config_files(tmp)
    _data_dirs(tmp)
    return tmp


@pytest.fixture
def compiles():
    """Counts JAX compilations and traces while the test runs."""
    events: list[str] = []

    def listener(name: str, *_args, **_kwargs) -> None:
        if name.startswith("/jax/core/compile/"):
            events.append(name)

    jax.monitoring.register_event_duration_secs_listener(listener)
    yield events
    jax.monitoring.unregister_event_duration_listener(listener)


def _snapshot(root: pathlib.Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def _fill(text: str, tmp: pathlib.Path) -> str:
    return text.format(tmp=tmp, **PATHS)


# ------------------------------------------------------------------------------ the tests


@pytest.mark.parametrize(
    "path",
    sorted(p.name for p in (ROOT / "configs").glob("*.py") if p.name != "head_to_head_fmnist.py"),
)
def test_shipped_configs_pass_the_value_checks(path):
    """Every shipped config loads through the value checks (a bad value raises) and names
    a registered kind of run."""
    assert load_config(ROOT / "configs" / path).method in METHODS


def test_values_are_checked_after_the_overrides(tmp_path):
    cfg = tmp_path / "zero.py"
    cfg.write_text(
        _FROM_DARTS + "    c = default_config('darts')\n    c.search.epochs = 0\n    return c\n"
    )
    assert load_config(cfg, ["search.epochs=2"]).search.epochs == 2  # fixed by the override
    with pytest.raises(ConfigError, match=rf"^{cfg}: config key 'search.epochs' must be >= 1"):
        load_config(cfg)
    with pytest.raises(ConfigError, match=r"^--set search.epochs=-2: .*'search.epochs'"):
        load_config(PATHS["darts"], ["search.epochs=3", "search.epochs=-2"])


def test_the_table_is_large_and_its_ids_unique():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))
    assert len(CASES) >= 40


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_bad_input_is_one_line_and_damages_nothing(case, files, tmp_path, capsys, compiles):
    if case.fmnist and not (os.path.exists(FMNIST) or os.environ.get(data.FMNIST_ENV_VAR)):
        pytest.skip("Fashion-MNIST IDX files missing: apt-get install dataset-fashion-mnist")
    tmp = tmp_path / "t"
    shutil.copytree(files, tmp, symlinks=True)
    _workdirs(tmp)
    if case.workdir == "readonly":
        os.chmod(tmp / "readonly", 0o500)
        if os.access(tmp / "readonly", os.W_OK):
            os.chmod(tmp / "readonly", 0o700)
            pytest.skip("the user can write into a 0o500 folder (root)")
    before = _snapshot(tmp / case.workdir) if case.workdir else {}
    argv = [_fill(a, tmp) for a in shlex.split(case.argv)]
    capsys.readouterr()
    cwd = os.getcwd()
    os.chdir(tmp)  # a command that wrongly writes into the current folder writes here
    try:
        rc = cli.main(argv)
    finally:
        os.chdir(cwd)
        if case.workdir == "readonly":
            os.chmod(tmp / "readonly", 0o700)
    out, err = capsys.readouterr()

    lines = err.strip().splitlines()
    assert rc == cli.EXIT_ERROR, (rc, err)
    assert out == ""
    assert len(lines) == 1, err
    line = lines[0]
    assert line.startswith("jaxnas: error: "), line
    for name in case.names:
        assert _fill(name, tmp) in line, (name, line)
    assert not compiles, f"bad input reached JAX: {sorted(set(compiles))}"

    if case.fresh:
        assert not (tmp / case.fresh).exists(), "a refused command created its workdir"
    if case.workdir:
        after = _snapshot(tmp / case.workdir)
        for rel, content in before.items():
            assert rel in after, f"{rel} was removed"
            if rel == "log.txt" and case.log_may_grow:
                assert after[rel].startswith(content), "log.txt was rewritten"
            else:
                assert after[rel] == content, f"{rel} was changed"
