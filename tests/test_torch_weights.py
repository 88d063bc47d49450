"""PyTorch weights in and out (jaxnas.torch_weights, `jaxnas import-torch / export-torch`).

The reference is the DARTS authors' ``cnn/model.py`` (imported unmodified from
``JAXNAS_DARTS_REFERENCE``, default ``../shared/peers/darts/cnn``) run by PyTorch.  Where
PyTorch or the reference is missing (CI), ``tests/data/torch_weights_ref.npz`` stands in:
the reference's keys and shapes and its outputs for weights drawn by
:func:`_fill`, written by ``python tests/test_torch_weights.py`` where both are present
(:func:`test_fixture_is_the_reference` checks that it still is).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import types

import jax
import numpy as np
import pytest

from jaxnas import cli
from jaxnas.genotype import DARTS_V1, DARTS_V2, Genotype
from jaxnas.models.darts_net import NetworkCIFAR, NetworkImageNet
from jaxnas.torch_weights import (
    read_state_dict,
    state_dict_from_variables,
    state_dict_shapes,
    variables_from_state_dict,
    write_state_dict,
)

HERE = os.path.dirname(os.path.abspath(__file__))
REFERENCE_DIR = os.environ.get(
    "JAXNAS_DARTS_REFERENCE", os.path.join(HERE, "..", "..", "shared", "peers", "darts", "cnn")
)
FIXTURE = os.path.join(HERE, "data", "torch_weights_ref.npz")
_REFERENCE_MODULES = ("model", "operations", "genotypes", "utils")

#: every op kind with weights, strided and not, from inputs and from nodes (CIFAR test)
COVER = dict(
    normal=[
        ("sep_conv_5x5", 0),
        ("dil_conv_5x5", 1),
        ("avg_pool_3x3", 0),
        ("skip_connect", 2),
        ("sep_conv_3x3", 3),
        ("max_pool_3x3", 1),
        ("dil_conv_3x3", 2),
        ("sep_conv_3x3", 4),
    ],
    normal_concat=[2, 3, 4, 5],
    reduce=[
        ("skip_connect", 0),
        ("sep_conv_3x3", 1),
        ("dil_conv_5x5", 0),
        ("avg_pool_3x3", 1),
        ("max_pool_3x3", 0),
        ("sep_conv_5x5", 2),
        ("dil_conv_3x3", 1),
        ("skip_connect", 3),
    ],
    reduce_concat=[2, 3, 4, 5],
)
#: (family, genotype, C, layers, input HxW, batch): small, with the auxiliary head
CASES = {
    "cifar": ("cifar", "COVER", 4, 4, 32, 4),
    "imagenet": ("imagenet", "DARTS_V2", 4, 4, 224, 2),
}


def _genotype(name: str) -> Genotype:
    return Genotype.from_darts(**COVER) if name == "COVER" else DARTS_V2


def _jax_net(case: str):
    family, g, c, layers, _, _ = CASES[case]
    cls = NetworkCIFAR if family == "cifar" else NetworkImageNet
    return cls(_genotype(g), 10, init_channels=c, layers=layers, auxiliary=True)


def _fill(shapes: dict[str, tuple[int, ...]], seed: int = 0) -> dict[str, np.ndarray]:
    """A state dict of the given keys and shapes, drawn reproducibly: weights ~ N(0, 1 /
    fan_in), BN scales in [0.5, 1.5], biases and running means ~ N(0, 0.1^2), running
    variances in [0.5, 1.5], num_batches_tracked 7 (not 0: the round trip must keep it)."""
    rng = np.random.default_rng(seed)
    out = {}
    for key, shape in shapes.items():
        leaf = key.rsplit(".", 1)[1]
        if leaf == "num_batches_tracked":
            out[key] = np.asarray(7, np.int64)
        elif leaf == "weight" and len(shape) > 1:
            fan_in = int(np.prod(shape[1:]))
            out[key] = (rng.standard_normal(shape) / np.sqrt(fan_in)).astype(np.float32)
        elif leaf in ("weight", "running_var"):
            out[key] = rng.uniform(0.5, 1.5, shape).astype(np.float32)
        else:
            out[key] = (0.1 * rng.standard_normal(shape)).astype(np.float32)
    return out


def _inputs(case: str) -> np.ndarray:
    _, _, _, _, hw, batch = CASES[case]
    return np.random.default_rng(1).standard_normal((batch, 3, hw, hw)).astype(np.float32)


# -------------------------------------------------------------------- the reference


@contextlib.contextmanager
def _reference():
    """The reference's ``model`` and ``genotypes`` modules (skips without PyTorch or the
    reference); ``utils.py`` imports torchvision for its data transforms, unused here."""
    torch = pytest.importorskip("torch")
    if not os.path.isfile(os.path.join(REFERENCE_DIR, "model.py")):
        pytest.skip(f"the DARTS reference is not at {REFERENCE_DIR}")
    saved = {
        m: sys.modules.pop(m) for m in (*_REFERENCE_MODULES, "torchvision") if m in sys.modules
    }
    stubs = []
    try:
        import torchvision  # noqa: F401
    except ImportError:
        tv = types.ModuleType("torchvision")
        tv.transforms = types.ModuleType("torchvision.transforms")
        sys.modules["torchvision"], sys.modules["torchvision.transforms"] = tv, tv.transforms
        stubs = ["torchvision", "torchvision.transforms"]
    sys.path.insert(0, os.path.abspath(REFERENCE_DIR))
    try:
        with contextlib.redirect_stdout(None):  # Cell.__init__ prints its channel counts
            import genotypes
            import model
        yield torch, model, genotypes
    finally:
        sys.path.remove(os.path.abspath(REFERENCE_DIR))
        for m in (*_REFERENCE_MODULES, *stubs):
            sys.modules.pop(m, None)
        sys.modules.update(saved)


def _reference_run(case: str) -> dict[str, np.ndarray]:
    """The reference network of ``case`` with :func:`_fill`'s weights: its keys and
    shapes, eval logits, train logits and auxiliary logits, and the state dict after
    that training forward (BN running statistics updated)."""
    family, g, c, layers, _, _ = CASES[case]
    with _reference() as (torch, model, genotypes):
        geno = genotypes.Genotype(**COVER) if g == "COVER" else genotypes.DARTS_V2
        cls = model.NetworkCIFAR if family == "cifar" else model.NetworkImageNet
        torch.manual_seed(0)
        with contextlib.redirect_stdout(None):
            net = cls(c, 10, layers, True, geno)
        net.drop_path_prob = 0.0  # drop path off: the reference draws its mask on CUDA
        shapes = {k: tuple(v.shape) for k, v in net.state_dict().items()}
        net.load_state_dict({k: torch.from_numpy(v) for k, v in _fill(shapes).items()})
        net.double()  # float64: the comparison tests the mapping, not float32 round-off
        x = torch.from_numpy(_inputs(case)).double()
        with torch.no_grad():
            net.eval()
            logits_eval, _ = net(x)
            net.train()
            logits_train, logits_aux = net(x)
        after = {k: v.numpy().copy() for k, v in net.state_dict().items()}
    return dict(
        keys=json.dumps(list(shapes.items())),
        logits_eval=logits_eval.numpy(),
        logits_train=logits_train.numpy(),
        logits_aux=logits_aux.numpy(),
        **{f"after/{k}": v for k, v in after.items() if "running" in k},
    )


def _fixture(case: str) -> dict[str, np.ndarray]:
    with np.load(FIXTURE) as f:
        return {k.split("/", 1)[1]: f[k] for k in f.files if k.startswith(case + "/")}


def _expected(case: str, source: str) -> dict:
    ref = _reference_run(case) if source == "torch" else _fixture(case)
    keys = {k: tuple(s) for k, s in json.loads(str(ref["keys"]))}
    return dict(ref, keys=keys)


def _close(a, b, what: str) -> None:
    """Equal to float64 round-off: relative error ``||a - b|| / ||b|| <= 1e-10`` (2-norm
    over all entries; a kh/kw-transposed depthwise kernel gives 3e-2).  In float32 the same
    comparison gives about 3e-6 for the logits and up to 2e-5 for the auxiliary logits
    (the head's BN normalises 8 values per channel at batch 2), PyTorch's own float32
    error being about 5x smaller; float64 makes the test about the mapping alone."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, what
    err = np.linalg.norm(a - b) / np.linalg.norm(b)
    assert err <= 1e-10, f"{what}: relative error {err:.3g}"


# -------------------------------------------------------------------------- tests


@pytest.mark.parametrize("case", ["cifar", pytest.param("imagenet", marks=pytest.mark.slow)])
@pytest.mark.parametrize("source", ["fixture", "torch"])
def test_logits_match_the_reference(case, source, x64):
    """The reference's weights in jaxnas give its logits, eval mode (running statistics)
    and train mode (batch statistics, auxiliary head, drop path off), and its running
    statistics after the training forward (PyTorch's unbiased update); exporting gives
    the state dict the reference had, and its keys and shapes are the reference's.
    ImageNet (224x224 input) is slow-marked: about 10 s more of compiling.

    4 cells, not 3: the reference's auxiliary head starts with an in-place ReLU on the
    output of its cell, which the next cell's preprocessing ReLU makes harmless, but
    which changes the training logits where that cell is the last one."""
    ref = _expected(case, source)
    net = _jax_net(case)
    hw = CASES[case][4]
    shape = (hw, hw, 3)
    assert state_dict_shapes(net, shape) == ref["keys"]  # names, shapes, order
    sd = _fill(ref["keys"])
    variables = variables_from_state_dict(net, sd, shape)
    back = state_dict_from_variables(net, variables, shape, num_batches_tracked=7)
    assert list(back) == list(sd)  # the reference's order
    for k in sd:
        np.testing.assert_array_equal(back[k], sd[k], err_msg=k)
        assert back[k].dtype == sd[k].dtype, k
    variables = jax.tree.map(lambda a: np.asarray(a, np.float64), variables)
    x = np.transpose(_inputs(case), (0, 2, 3, 1)).astype(np.float64)  # NCHW -> NHWC

    @jax.jit  # one program for both modes: compile time is most of this test's time
    def run(v):
        logits_eval, no_aux = net.apply(v, x, train=False)
        train = net.apply(v, x, train=True, drop_prob=0.0, mutable=["batch_stats"])
        return logits_eval, no_aux, train

    logits, no_aux, ((logits_train, aux), upd) = run(variables)
    assert no_aux is None
    _close(logits, ref["logits_eval"], "eval logits")
    _close(logits_train, ref["logits_train"], "train logits")
    _close(aux, ref["logits_aux"], "auxiliary logits")
    after = state_dict_from_variables(
        net, {"params": variables["params"], **upd}, shape, num_batches_tracked=7
    )
    stats = [k for k in ref if k.startswith("after/")]
    assert len(stats) == 2 * sum(k.endswith("running_var") for k in sd)
    for key in stats:
        _close(after[key[6:]], ref[key], key[6:])


def test_scanned_cells_read_and_write_the_same_state_dict():
    """Scanned cells (the retraining default) hold cell ``a + k`` at index ``k`` of their
    stacked variables (as ``nn.scan`` runs them, cf. test_models' _stack_cells), and give
    back the same state dict as the unrolled network."""
    unrolled = NetworkCIFAR(DARTS_V2, 10, init_channels=4, layers=12)
    scanned = unrolled.clone(scan_cells=True)
    shape = (32, 32, 3)
    keys = state_dict_shapes(unrolled, shape)
    assert state_dict_shapes(scanned, shape) == keys
    sd = _fill(keys)
    vu = variables_from_state_dict(unrolled, sd, shape)
    vs = variables_from_state_dict(scanned, sd, shape)
    groups = sorted(k for k in vs["params"] if k.startswith("cells_"))
    assert groups == ["cells_02_03", "cells_06_07", "cells_10_11"]
    for col in ("params", "batch_stats"):
        for g in groups:
            a, b = int(g[6:8]), int(g[9:11])
            for k, i in enumerate(range(a, b + 1)):
                jax.tree.map(
                    lambda s, u, k=k: np.testing.assert_array_equal(s[k], u),
                    vs[col][g]["cell"],
                    vu[col][f"cell_{i:02d}"],
                )
    back = state_dict_from_variables(scanned, vs, shape, num_batches_tracked=7)
    assert list(back) == list(sd)
    for k in sd:
        np.testing.assert_array_equal(back[k], sd[k], err_msg=k)


# ---------------------------------------------------------------- the commands

#: ``jaxnas import-torch`` flags of a tiny Fashion-MNIST network (3 cells, C=4, aux head)
TINY = [
    "--config",
    "configs/eval_fmnist_small.py",
    "--set",
    "model.init_channels=4",
    "--set",
    "model.layers=3",
]


def _tiny_state_dict(tmp_path, name="sd.npz", edit=None, **net_kw) -> str:
    """A reference state dict (``.npz``) of the TINY network (changed by ``net_kw``),
    edited by ``edit(sd)``."""
    kw = dict(init_channels=4, layers=3, auxiliary=True) | net_kw
    net = NetworkCIFAR(kw.pop("genotype", DARTS_V2), 10, **kw)
    sd = _fill(state_dict_shapes(net, (28, 28, 1)))
    if edit:
        edit(sd)
    path = str(tmp_path / name)
    write_state_dict(sd, path)
    return path


def _import_tiny(tmp_path, capsys) -> tuple[str, str]:
    src, w = _tiny_state_dict(tmp_path), str(tmp_path / "w")
    args = ["import-torch", "--checkpoint", src, "--workdir", w, "--genotype", "DARTS_V2"]
    assert cli.main([*args, *TINY]) == 0
    assert f"jaxnas eval --checkpoint {w}" in capsys.readouterr().out
    return src, w


@pytest.mark.slow  # ~10 s: `jaxnas eval` compiles the network's init and eval step
def test_jaxnas_eval_reads_an_imported_workdir(tmp_path, capsys):
    _, w = _import_tiny(tmp_path, capsys)
    assert cli.main(["eval", "--checkpoint", w, "--set", "run.eval_limit=32", "--json"]) == 0
    r = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert r["examples"] == 32 and r["step"] == 0 and 0 <= r["test/accuracy"] <= 1
    assert r["params"] == 2_642  # DARTS_V2, C=4, 3 cells, 1 input channel, no aux head


def test_import_export_round_trip(tmp_path, capsys):
    """export-torch of an imported workdir gives back the imported file key for key and
    bit for bit (BN counts included: the checkpoint is at step 0)."""
    src, w = _import_tiny(tmp_path, capsys)
    with open(os.path.join(w, "config.json")) as f:
        model = json.load(f)["model"]
    assert (model["genotype"], model["init_channels"], model["layers"]) == ("DARTS_V2", 4, 3)
    out = str(tmp_path / "back.npz")
    assert cli.main(["export-torch", "--checkpoint", w, "--out", out]) == 0
    a, b = read_state_dict(src), read_state_dict(out)
    assert list(a) == list(b)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
        assert a[k].dtype == b[k].dtype, k
    # a second import into the same workdir is refused, the first one's files kept
    before = sorted(os.listdir(w))
    args = ["import-torch", "--checkpoint", src, "--workdir", w, *TINY]
    assert cli.main(args) == 2
    assert "already has checkpoints; import into a fresh --workdir" in capsys.readouterr().err
    assert sorted(os.listdir(w)) == before


def _drop(key):
    return lambda sd: sd.pop(key)


def _reshape(key):
    return lambda sd: sd.__setitem__(key, np.zeros((1, *sd[key].shape), np.float32))


@pytest.mark.parametrize(
    "net_kw, edit, flags, message",
    [
        (dict(init_channels=8), None, [], "'stem.0.weight' has shape (24, 1, 3, 3) in the "
         "checkpoint, NetworkCIFAR(C=4, layers=3, auxiliary=True, 10 classes) of this genotype "
         "needs (12, 1, 3, 3)"),
        (dict(genotype=DARTS_V1), None, [], "the checkpoint has no 'cells.0._ops.2.op.1.weight' "
         "(shape (4, 1, 3, 3)) that NetworkCIFAR"),  # DARTS_V1's op 2 is a skip, V2's a conv
        (dict(auxiliary=False), None, [], "the checkpoint has no 'auxiliary_head.features.2."
         "weight' (shape (128, 64, 1, 1))"),
        ({}, None, ["--set", "model.auxiliary=False"], "the checkpoint has "
         "'auxiliary_head.features.2.weight', which NetworkCIFAR(C=4, layers=3, auxiliary=False, "
         "10 classes) of this genotype does not have (and 13 more such keys)"),
        ({}, _drop("cells.2.preprocess1.op.2.running_var"), [], "no "
         "'cells.2.preprocess1.op.2.running_var' (shape (16,))"),
        ({}, _reshape("classifier.weight"), [], "'classifier.weight' has shape (1, 10, 64) in the "
         "checkpoint, NetworkCIFAR(C=4, layers=3, auxiliary=True, 10 classes) of this genotype "
         "needs (10, 64)"),
        ({}, lambda sd: sd.update(extra=np.zeros(1)), [], "the checkpoint has 'extra'"),
        (dict(layers=6), None, [], "'cells.1.preprocess0.op.1.weight' has shape (4, 12, "
         "1, 1) in the checkpoint, NetworkCIFAR(C=4, layers=3, auxiliary=True, 10 classes) of "
         "this genotype needs (8, 12, 1, 1)"),
    ],
)  # fmt: skip
def test_import_errors_are_one_line_and_write_nothing(
    tmp_path, capsys, net_kw, edit, flags, message
):
    """A checkpoint that does not fit the genotype / config: exit 2, one line naming the
    first mismatching key and what was expected, no workdir."""
    src, w = _tiny_state_dict(tmp_path, edit=edit, **net_kw), tmp_path / "w"
    args = ["import-torch", "--checkpoint", src, "--workdir", str(w), *TINY, *flags]
    assert cli.main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("jaxnas: error: ") and "\n" not in err
    assert message in err, err
    assert not w.exists()


def test_pt_files_need_the_torch_extra(tmp_path, capsys, monkeypatch):
    """Without PyTorch a .pt file is one line naming the extra (exit 2); .npz works."""
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` fails as if absent
    (tmp_path / "w.pt").write_bytes(b"")
    w = tmp_path / "w"
    args = ["import-torch", "--checkpoint", str(tmp_path / "w.pt"), "--workdir", str(w), *TINY]
    assert cli.main(args) == 2
    assert "pip install 'jaxnas[torch]'" in capsys.readouterr().err
    assert not w.exists()
    assert cli.main(["export-torch", "--checkpoint", str(w), "--out", str(tmp_path / "x.pt")]) == 2
    assert "pip install 'jaxnas[torch]'" in capsys.readouterr().err


def test_pt_files_load_into_the_reference_strictly(tmp_path):
    """An exported ``.pt`` loads into the reference's NetworkCIFAR with ``strict=True``;
    a checkpoint dict (``{"state_dict": ...}``) with DataParallel's ``module.`` prefix
    reads back as the plain state dict."""
    pytest.importorskip("torch")
    net = _jax_net("cifar")
    shape = (32, 32, 3)
    sd = _fill(state_dict_shapes(net, shape))
    exported = state_dict_from_variables(
        net, variables_from_state_dict(net, sd, shape), shape, num_batches_tracked=7
    )
    with _reference() as (torch, model, genotypes):
        write_state_dict(exported, tmp_path / "w.pt")
        with contextlib.redirect_stdout(None):
            ref = model.NetworkCIFAR(4, 10, CASES["cifar"][3], True, genotypes.Genotype(**COVER))
        ref.load_state_dict(torch.load(tmp_path / "w.pt"), strict=True)
        for k, v in ref.state_dict().items():
            np.testing.assert_array_equal(v.numpy(), sd[k], err_msg=k)
        wrapped = {
            "epoch": 3,
            "state_dict": {f"module.{k}": v for k, v in ref.state_dict().items()},
        }
        torch.save(wrapped, tmp_path / "wrapped.pt")
    back = read_state_dict(tmp_path / "wrapped.pt")
    assert list(back) == list(sd)
    for k in sd:
        np.testing.assert_array_equal(back[k], sd[k], err_msg=k)


def test_fixture_is_the_reference():
    """The committed fixture holds what the reference computes today."""
    for case in CASES:
        live, saved = _reference_run(case), _fixture(case)
        assert set(live) == set(saved)
        assert json.loads(str(saved["keys"])) == json.loads(live["keys"])
        for k in live:
            if k != "keys":
                np.testing.assert_allclose(saved[k], live[k], rtol=1e-6, atol=1e-6, err_msg=k)


if __name__ == "__main__":  # write the fixture (needs PyTorch and the reference)
    out = {}
    for case in CASES:
        out.update({f"{case}/{k}": v for k, v in _reference_run(case).items()})
    np.savez_compressed(FIXTURE, **out)
    print(f"wrote {FIXTURE} ({os.path.getsize(FIXTURE)} bytes)")
