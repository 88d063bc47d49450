"""PyTorch weights of the DARTS evaluation networks, in and out (``jaxnas import-torch``,
``jaxnas export-torch``).

The DARTS authors publish their retrained networks as PyTorch ``state_dict`` files of
``model.py``'s ``NetworkCIFAR`` / ``NetworkImageNet``, and so do repositories that
reuse that file for their own cells (any such file has these keys).
:func:`import_torch` turns such a file into a retraining workdir that ``jaxnas eval``
evaluates (and ``jaxnas train --resume`` fine-tunes); :func:`export_torch` writes a
retraining workdir's state as a ``state_dict`` that the reference classes load with
``strict=True``.  The conversion
itself is :func:`variables_from_state_dict` / :func:`state_dict_from_variables`, plain
numpy; only reading and writing ``.pt`` files needs PyTorch (``pip install
'jaxnas[torch]'``).  A ``.npz`` file with the same keys works without it, both ways.

Name mapping
------------
Every key is derived from the jaxnas variable's path by this table, never from the
order of parameters; cell ``i`` (``cell_ii``) is the reference's ``cells.i`` and op
``j`` of a cell (``ops_j``, the ``j``-th ``(op, input)`` pair, node by node) its
``_ops.j``::

  jaxnas path                          reference key prefix        module
  stem_conv, stem_bn                   stem.0, stem.1              CIFAR stem
  stem0_conv0, stem0_bn0               stem0.0, stem0.1            ImageNet stems
  stem0_conv1, stem0_bn1               stem0.3, stem0.4
  stem1_conv, stem1_bn                 stem1.1, stem1.2
  cell_ii/preprocessK/conv, bn         cells.i.preprocessK.op.1, .op.2   ReLUConvBN
  cell_ii/preprocess0/conv_1, conv_2, bn   cells.i.preprocess0.conv_1, .conv_2, .bn
                                       (FactorizedReduce, after a reduction cell)
  cell_ii/ops_j/dw_conv1, pw_conv1, bn1,   cells.i._ops.j.op.1, .op.2, .op.3,
               dw_conv2, pw_conv2, bn2                  .op.5, .op.6, .op.7  (sep_conv)
  cell_ii/ops_j/dw_conv, pw_conv, bn   cells.i._ops.j.op.1, .op.2, .op.3 (dil_conv)
  cell_ii/ops_j/conv_1, conv_2, bn     cells.i._ops.j.conv_1, .conv_2, .bn
                                       (strided skip_connect: FactorizedReduce)
  cell_ii/ops_j/conv, bn               cells.i._ops.j.op.1, .op.2  (conv_3x3: ReLUConvBN)
  auxiliary_head/conv1, bn1            auxiliary_head.features.2, .features.3
  auxiliary_head/conv2, bn2            auxiliary_head.features.5, .features.6 (CIFAR)
  auxiliary_head/classifier            auxiliary_head.classifier
  classifier                           classifier

and inside a module:

  params     kernel -> weight; BN scale -> weight, bias -> bias
  batch_stats  mean -> running_mean, var -> running_var (float32); the reference's
             num_batches_tracked (int64 scalar) has no jaxnas counterpart, see below

Pools, identities and zero ops have no weights (no keys in either).  The array layouts
(jaxnas is NHWC, PyTorch NCHW)::

  conv (stems, aux 2x2)  (kh, kw, C_in, C_out)  <->  (C_out, C_in, kh, kw)
  1x1 conv (nn.Dense)    (C_in, C_out)          <->  (C_out, C_in, 1, 1)
  depthwise conv         (k, k, C)              <->  (C, 1, k, k)   (groups=C)
  linear (classifiers)   (in, out)              <->  (out, in)
  BN vectors             (C,)                   <->  (C,)

Scanned cells (``model.scan_cells``, the retraining default): a run of identical
normal cells ``a..b`` is one ``cells_aa_bb/cell`` whose variables are stacked along a
leading axis, entry ``k`` being cell ``a + k``; it is converted entry by entry, so both
layouts read and write the same ``state_dict``.  Grouped ops (``model.group_ops``) are
not converted (a one-line error: retrain or evaluate with ``group_ops=False``).

``num_batches_tracked``: PyTorch counts BN updates but, with its default momentum,
never reads the count.  :func:`import_torch` keeps the file's counts in
``torch_import.json`` and :func:`export_torch` writes them back plus the optimiser
steps taken here (``step * train.accumulate``; a workdir trained here from scratch: the
steps alone), so an import followed by an export gives back the file, bit for bit.

The reference classes load the exported file with ``strict=True`` when the network is
theirs: one normal and one reduction cell, two inputs per node, reduction cells at
``layers // 3`` and ``2 * layers // 3``, ops of their ``operations.OPS``, 3 input
channels.  Others (per-layer cells, other positions) get the same key scheme, for a
user's own PyTorch network.

Authors' files: a file that holds ``{"state_dict": ...}`` (or ``"model"``,
``"model_state_dict"``, ``"net"``) is unwrapped, and a ``module.`` prefix
(``nn.DataParallel``) is dropped; files saved before PyTorch 0.4 have no
``num_batches_tracked`` keys, which is fine (the counts are then 0).
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxnas import loop, parallel, search_spaces
from jaxnas.config import config_to_json, validate
from jaxnas.files import write_text
from jaxnas.models.darts_net import DATASET_SPECS
from jaxnas.ops import DilConv, FactorizedReduce, OpsConfig, ReLUConvBN, SepConv, make_op
from jaxnas.optional import require
from jaxnas.runtime import RunError, checkpoint_manager, restore_for_eval, write_json
from jaxnas.spaces.darts_genotype import Genotype
from jaxnas.train import Trainer, TrainState, TrainWorkdir, resolve_genotype

__all__ = [
    "IMPORT_JSON",
    "export_torch",
    "import_torch",
    "read_state_dict",
    "state_dict_from_variables",
    "state_dict_shapes",
    "variables_from_state_dict",
    "write_state_dict",
]

#: What :func:`import_torch` writes beside the checkpoint: the source file and its BN
#: counts (``num_batches_tracked``), read back by :func:`export_torch`.
IMPORT_JSON = "torch_import.json"

StateDict = dict[str, np.ndarray]
_Path = tuple[str, ...]  # (collection, module, ..., leaf), a flax variable's path

# ------------------------------------------------------------------------ the mapping

#: Top-level modules of the jaxnas networks -> the reference's module paths.
_TOP = {
    "stem_conv": "stem.0",
    "stem_bn": "stem.1",
    "stem0_conv0": "stem0.0",
    "stem0_bn0": "stem0.1",
    "stem0_conv1": "stem0.3",
    "stem0_bn1": "stem0.4",
    "stem1_conv": "stem1.1",
    "stem1_bn": "stem1.2",
    "classifier": "classifier",
}
#: Submodules of ``AuxiliaryHead`` -> of ``AuxiliaryHeadCIFAR/ImageNet``.
_AUX = {
    "conv1": "features.2",
    "bn1": "features.3",
    "conv2": "features.5",
    "bn2": "features.6",
    "classifier": "classifier",
}
#: Submodules of an op (by its exact class) -> the reference op's submodule paths.
_RELU_CONV_BN = {"conv": "op.1", "bn": "op.2"}
_OP_TABLES: dict[type, dict[str, str]] = {
    SepConv: {
        "dw_conv1": "op.1",
        "pw_conv1": "op.2",
        "bn1": "op.3",
        "dw_conv2": "op.5",
        "pw_conv2": "op.6",
        "bn2": "op.7",
    },
    DilConv: {"dw_conv": "op.1", "pw_conv": "op.2", "bn": "op.3"},
    FactorizedReduce: {"conv_1": "conv_1", "conv_2": "conv_2", "bn": "bn"},
    ReLUConvBN: _RELU_CONV_BN,
}
_LEAVES = {
    ("params", "kernel"): "weight",
    ("params", "scale"): "weight",
    ("params", "bias"): "bias",
    ("batch_stats", "mean"): "running_mean",
    ("batch_stats", "var"): "running_var",
}
#: The order of the reference's ``state_dict`` (module registration order), by name part.
_ORDER = {
    "stem": 0,
    "stem0": 0,
    "stem1": 1,
    "cells": 2,
    "auxiliary_head": 3,
    "classifier": 4,
    "features": 0,
    "preprocess0": 0,
    "preprocess1": 1,
    "_ops": 2,
    "op": 0,
    "conv_1": 0,
    "conv_2": 1,
    "bn": 2,
    "weight": 0,
    "bias": 1,
    "running_mean": 2,
    "running_var": 3,
    "num_batches_tracked": 4,
}
_NBT = "num_batches_tracked"


def _order(key: str) -> tuple[int, ...]:
    return tuple(int(p) if p.isdigit() else _ORDER.get(p, 99) for p in key.split("."))


class _Layout:
    """What the mapping needs to know about a network: its family, genotype, layers and
    reduction cells (the cells' ops and their preprocessing follow from them)."""

    def __init__(self, model: Any):
        if not isinstance(getattr(model, "genotype", None), Genotype):
            raise RunError(
                f"PyTorch weights map DARTS-space networks only, not {type(model).__name__}"
            )
        if model.cfg.group_ops:
            raise RunError(
                "PyTorch weights map the per-op layout: set model.group_ops=False (the same "
                "network, its ops' variables not grouped)"
            )
        self.model = model
        self.genotype: Genotype = model.genotype
        self.layers = int(model.layers)
        self.red = tuple(model.reduction_cells())
        self.imagenet = bool(model.reduction_prev)  # the ImageNet stems halve s0 once more

    def reduction_prev(self, i: int) -> bool:
        return (i - 1) in self.red if i else self.imagenet

    def op_module(self, i: int, j: int) -> tuple[str, Any]:
        cell = self.genotype.cell_for_layer(i, self.layers, self.red)
        name, src, _ = cell.edges[j]
        stride = 2 if i in self.red and src < cell.n_inputs else 1
        # only the op's class is read (it picks the table), so any channel count does
        op = make_op(name, 4, stride, affine=True, search=False, cfg=OpsConfig())
        return name, op

    def torch_key(self, path: _Path) -> str:
        """The reference's key of the (unscanned) jaxnas variable ``path``."""
        col, mods, leaf = path[0], path[1:-1], path[-1]
        top = mods[0]
        if top in _TOP and len(mods) == 1:
            prefix = _TOP[top]
        elif top == "auxiliary_head" and len(mods) == 2 and mods[1] in _AUX:
            prefix = f"auxiliary_head.{_AUX[mods[1]]}"
        elif re.fullmatch(r"cell_\d+", top) and len(mods) == 3:
            i, sub = int(top[5:]), mods[1]
            if sub in ("preprocess0", "preprocess1"):
                fr = sub == "preprocess0" and self.reduction_prev(i)
                table = _OP_TABLES[FactorizedReduce] if fr else _RELU_CONV_BN
                prefix = f"cells.{i}.{sub}.{table[mods[2]]}"
            elif re.fullmatch(r"ops_\d+", sub):
                j = int(sub[4:])
                name, op = self.op_module(i, j)
                table = _OP_TABLES.get(type(op))
                if table is None:
                    raise RunError(
                        f"op {name!r} (cell {i}, op {j}) has no counterpart in the DARTS "
                        "reference's operations.py"
                    )
                prefix = f"cells.{i}._ops.{j}.{table[mods[2]]}"
            else:
                raise KeyError(path)
        else:
            raise KeyError(path)
        return f"{prefix}.{_LEAVES[col, leaf]}"


def _to_torch(a: np.ndarray, path: _Path) -> np.ndarray:
    """A jaxnas array in the reference's layout (see the module docstring's table)."""
    if path[-1] != "kernel":
        return a
    if a.ndim == 4:  # (kh, kw, in, out) -> (out, in, kh, kw)
        return a.transpose(3, 2, 0, 1)
    if a.ndim == 3:  # depthwise (k, k, C) -> (C, 1, k, k)
        return a.transpose(2, 0, 1)[:, None]
    if "classifier" in path[1:-1]:  # linear (in, out) -> (out, in)
        return a.T
    return a.T[:, :, None, None]  # 1x1 conv as nn.Dense (in, out) -> (out, in, 1, 1)


def _from_torch(t: np.ndarray, path: _Path, ndim: int) -> np.ndarray:
    """Inverse of :func:`_to_torch` for a jaxnas array of ``ndim`` dimensions."""
    if path[-1] != "kernel":
        return t
    if ndim == 4:
        return t.transpose(2, 3, 1, 0)
    if ndim == 3:
        return t[:, 0].transpose(1, 2, 0)
    if "classifier" in path[1:-1]:
        return t.T
    return t[:, :, 0, 0].T


def _torch_shape(shape: tuple[int, ...], path: _Path) -> tuple[int, ...]:
    return _to_torch(np.empty(shape, np.uint8), path).shape


def _flatten(tree: Mapping[str, Any], prefix: _Path = ()) -> dict[_Path, Any]:
    out: dict[_Path, Any] = {}
    for k, v in tree.items():
        if isinstance(v, Mapping):
            out.update(_flatten(v, (*prefix, k)))
        else:
            out[(*prefix, k)] = v
    return out


def _unflatten(flat: Mapping[_Path, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for path, v in flat.items():
        node = out
        for k in path[:-1]:
            node = node.setdefault(k, {})
        node[path[-1]] = v
    return out


def _scanned(path: _Path) -> tuple[int, int] | None:
    """``(a, b)`` for a variable of the scanned cells ``cells_aa_bb/cell/...``."""
    m = re.fullmatch(r"cells_(\d+)_(\d+)", path[1]) if len(path) > 2 else None
    return (int(m[1]), int(m[2])) if m and path[2] == "cell" else None


@functools.lru_cache(maxsize=8)  # flax modules hash by their fields; one trace per network
def _shapes(model: Any, input_shape: tuple[int, ...]) -> dict[_Path, Any]:
    """``{path: ShapeDtypeStruct}`` of ``model``'s variables (traced, not run; do not
    modify the cached result)."""
    x = jnp.zeros((2, *input_shape), jnp.float32)
    v = jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))
    return _flatten({c: v[c] for c in ("params", "batch_stats") if c in v})


def _unscanned_shapes(model: Any, input_shape: tuple[int, ...]) -> dict[_Path, tuple]:
    """The shapes of ``model``'s variables in the per-cell layout (``cell_ii``), derived
    from its own (maybe scanned) layout."""
    out = {}
    for path, s in _shapes(model, tuple(input_shape)).items():
        span = _scanned(path)
        if span is None:
            out[path] = tuple(s.shape)
        else:
            for i in range(span[0], span[1] + 1):
                out[(path[0], f"cell_{i:02d}", *path[3:])] = tuple(s.shape[1:])
    return out


def _expected(model: Any, input_shape: tuple[int, ...]) -> dict[str, tuple[_Path, tuple, int]]:
    """``{torch key: (unscanned jaxnas path, torch shape, jaxnas ndim)}`` in the
    reference's order."""
    layout = _Layout(model)
    rows = {}
    for path, shape in _unscanned_shapes(model, tuple(input_shape)).items():
        try:
            key = layout.torch_key(path)
        except KeyError:
            raise RunError(
                f"jaxnas variable {'/'.join(path)} has no place in the DARTS reference's state_dict"
            ) from None
        rows[key] = (path, _torch_shape(shape, path), len(shape))
    return dict(sorted(rows.items(), key=lambda kv: _order(kv[0])))


def state_dict_shapes(model: Any, input_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
    """The reference ``state_dict``'s keys and shapes for the jaxnas network ``model``
    (``NetworkCIFAR`` / ``NetworkImageNet``; input ``(H, W, C_in)``), in its order, with
    a ``num_batches_tracked`` (shape ``()``) after each BN's running variance."""
    out: dict[str, tuple[int, ...]] = {}
    for key, (_, shape, _) in _expected(model, input_shape).items():
        out[key] = shape
        if key.endswith(".running_var"):
            out[key[: -len("running_var")] + _NBT] = ()
    return out


def _describe(model: Any) -> str:
    return (
        f"{type(model).__name__}(C={model.init_channels}, layers={model.layers}, "
        f"auxiliary={model.auxiliary}, {model.num_classes} classes) of this genotype"
    )


def variables_from_state_dict(
    model: Any, state_dict: Mapping[str, Any], input_shape: tuple[int, ...]
) -> dict[str, Any]:
    """``{"params", "batch_stats"}`` of ``model`` (its own layout, scanned or not) from a
    reference ``state_dict`` (numpy arrays or anything ``np.asarray`` reads).

    Raises:
      RunError: one line naming the first key (in the reference's order) that is missing
        or has another shape than ``model`` needs, and what was expected; or a key the
        network does not have.
    """
    expected = _expected(model, input_shape)
    what = _describe(model)
    flat: dict[_Path, np.ndarray] = {}
    for key, (path, shape, ndim) in expected.items():
        if key not in state_dict:
            raise RunError(f"the checkpoint has no {key!r} (shape {shape}) that {what} needs")
        t = np.asarray(state_dict[key])
        if tuple(t.shape) != shape:
            raise RunError(
                f"{key!r} has shape {tuple(t.shape)} in the checkpoint, {what} needs {shape}"
            )
        flat[path] = np.ascontiguousarray(_from_torch(t, path, ndim), np.float32)
    known = set(expected) | {k[: -len("running_var")] + _NBT for k in expected}
    extra = sorted((k for k in state_dict if k not in known), key=_order)
    if extra:
        raise RunError(
            f"the checkpoint has {extra[0]!r}, which {what} does not have"
            + (f" (and {len(extra) - 1} more such keys)" if len(extra) > 1 else "")
        )
    return _unflatten(_relayout(model, flat, input_shape))


def _relayout(
    model: Any, flat: Mapping[_Path, np.ndarray], input_shape: tuple[int, ...]
) -> dict[_Path, np.ndarray]:
    """Per-cell variables stacked into ``model``'s scanned groups where it has them."""
    out = {}
    for path, s in _shapes(model, tuple(input_shape)).items():
        span = _scanned(path)
        if span is None:
            a = flat[path]
        else:
            cells = range(span[0], span[1] + 1)
            a = np.stack([flat[(path[0], f"cell_{i:02d}", *path[3:])] for i in cells])
        if a.shape != tuple(s.shape):  # the mapping and the network disagree: a bug
            raise AssertionError(f"{'/'.join(path)}: {a.shape} != {tuple(s.shape)}")
        out[path] = a
    return out


def state_dict_from_variables(
    model: Any,
    variables: Mapping[str, Any],
    input_shape: tuple[int, ...],
    num_batches_tracked: int | Mapping[str, int] = 0,
) -> StateDict:
    """The reference ``state_dict`` (numpy arrays, the reference's key order) of
    ``model``'s ``{"params", "batch_stats"}``.

    ``num_batches_tracked``: the count written for every BN, or ``{key: count}`` by the
    full ``...num_batches_tracked`` key (0 for keys not in it).
    """
    expected = _expected(model, input_shape)
    flat = {}
    for path, a in _flatten({c: variables[c] for c in ("params", "batch_stats")}).items():
        a = np.asarray(jax.device_get(a))
        span = _scanned(path)
        if span is None:
            flat[path] = a
        else:
            for k, i in enumerate(range(span[0], span[1] + 1)):
                flat[(path[0], f"cell_{i:02d}", *path[3:])] = a[k]
    out: StateDict = {}
    for key, (path, shape, _) in expected.items():
        t = np.ascontiguousarray(_to_torch(flat[path], path))
        assert t.shape == shape, (key, t.shape, shape)
        out[key] = t
        if key.endswith(".running_var"):
            nbt = key[: -len("running_var")] + _NBT
            n = (
                num_batches_tracked.get(nbt, 0)
                if isinstance(num_batches_tracked, Mapping)
                else num_batches_tracked
            )
            out[nbt] = np.asarray(n, np.int64)
    return out


# ---------------------------------------------------------------------------- files


def read_state_dict(path: str | os.PathLike) -> StateDict:
    """A ``state_dict`` from a ``.pt``/``.pth`` file (PyTorch, tensors only: loaded with
    ``weights_only=True``) or a ``.npz`` file (numpy), as numpy arrays.

    A checkpoint dict holding the state dict under ``state_dict``, ``model``,
    ``model_state_dict`` or ``net`` is unwrapped; a ``module.`` prefix on every key
    (``nn.DataParallel``) is dropped.

    Raises:
      RunError: the file is missing or holds no state dict; MissingExtraError: a ``.pt``
        file without PyTorch installed.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise RunError(f"--checkpoint {path} does not exist")
    if path.endswith(".npz"):
        try:
            with np.load(path, allow_pickle=False) as f:
                sd = {k: f[k] for k in f.files}
        except (OSError, ValueError) as e:
            raise RunError(f"{path} is not a readable .npz file: {e}") from e
    else:
        torch = require("torch", "reading a PyTorch checkpoint (.pt)")
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - pickle, zip and torch errors alike
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            raise RunError(
                f"{path} cannot be read as a PyTorch state_dict ({type(e).__name__}: {first[:200]})"
            ) from e
        if isinstance(obj, Mapping):
            for wrapper in ("state_dict", "model", "model_state_dict", "net"):
                if isinstance(obj.get(wrapper), Mapping):
                    obj = obj[wrapper]
                    break
        if not isinstance(obj, Mapping) or not all(
            isinstance(v, torch.Tensor) for v in obj.values()
        ):
            raise RunError(f"{path} holds no state_dict (a mapping of names to tensors)")
        sd = {str(k): v.detach().cpu().numpy() for k, v in obj.items()}
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module.") :]: v for k, v in sd.items()}
    return sd


def write_state_dict(state_dict: Mapping[str, np.ndarray], path: str | os.PathLike) -> None:
    """Write ``state_dict`` as ``.npz`` (numpy) or, for any other suffix, as a PyTorch
    file of tensors (``torch.save``; needs PyTorch)."""
    path = os.fspath(path)
    torch = None if path.endswith(".npz") else require("torch", "writing a .pt checkpoint")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if torch is None:
        np.savez(path, **dict(state_dict))
        return
    from collections import OrderedDict

    torch.save(OrderedDict((k, torch.from_numpy(np.array(v))) for k, v in state_dict.items()), path)


# -------------------------------------------------------------------------- workdirs


def _input_shape(config: ml_collections.ConfigDict) -> tuple[int, int, int]:
    spec = DATASET_SPECS.get(config.data.dataset)
    if spec is None:
        raise RunError(
            f"PyTorch weights map the DARTS networks of {', '.join(DATASET_SPECS)}; "
            f"data.dataset is {config.data.dataset!r}"
        )
    h, w, c = spec.input_shape
    pad = int(config.data.get("pad_to") or 0)
    return (pad, pad, c) if pad else (h, w, c)


def _trainer(config: ml_collections.ConfigDict, genotype: Any) -> Trainer:
    if not isinstance(genotype, Genotype):
        raise RunError(f"PyTorch weights map DARTS-space genotypes only, not {genotype}")
    spec = DATASET_SPECS[config.data.dataset]
    shape = _input_shape(config)
    try:
        return Trainer(
            config,
            genotype,
            num_classes=spec.num_classes,
            input_shape=shape,
            steps_per_epoch=1,
            mesh=parallel.data_mesh(1),
        )
    except ValueError as e:  # bad model settings; GenotypeError (a ValueError) too
        raise RunError(str(e)) from e


def _zero_state(trainer: Trainer, input_shape: tuple[int, ...]) -> TrainState:
    """A :class:`TrainState` of zeros with the structure ``trainer.init`` gives (the
    target a checkpoint is restored into), built without compiling the network."""
    x = jnp.zeros((2, *input_shape), jnp.float32)
    v = jax.eval_shape(lambda: trainer.model.init(jax.random.key(0), x, train=False))
    abstract = TrainState(
        step=jax.ShapeDtypeStruct((), jnp.int32),
        params=v["params"],
        batch_stats=v.get("batch_stats", {}),
        opt_state=jax.eval_shape(trainer.tx.init, v["params"]),
        rng=jax.eval_shape(lambda: jax.random.key_data(jax.random.key(0))),
    )
    return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), abstract)


def import_torch(
    checkpoint: str | os.PathLike,
    config: ml_collections.ConfigDict,
    workdir: str | os.PathLike,
    *,
    genotype: Genotype | str | None = None,
) -> dict[str, Any]:
    """Write a retraining workdir holding the weights of a reference ``state_dict``.

    Args:
      checkpoint: a ``.pt`` file of ``NetworkCIFAR`` / ``NetworkImageNet`` weights (or a
        ``.npz`` file with the same keys).
      config: a retraining config (``method="train"``) that builds the same network:
        ``model.init_channels``, ``layers``, ``auxiliary``, the dataset's classes.
      workdir: a new folder (one without checkpoints).
      genotype: default ``config.model.genotype``.

    The workdir gets ``config.json``, ``genotype.json``, ``checkpoints/0`` (step 0, the
    optimiser's state fresh; ``jaxnas eval`` reads it) and :data:`IMPORT_JSON`.  Every
    check runs before anything is written.

    Returns:
      ``{"workdir", "checkpoint", "params", "tensors"}``.

    Raises:
      RunError: a key or shape that does not fit the network (naming the first one and
        what was expected), an unreadable file, a workdir that already has checkpoints.
    """
    config = validate(config.to_dict() if hasattr(config, "to_dict") else dict(config))
    if config.method != "train":
        raise RunError(
            f"import-torch takes a retraining config (method='train'), not {config.method!r}"
        )
    if isinstance(genotype, str):  # recorded in config.json as `jaxnas train --genotype` would
        config.model.genotype = genotype
    genotype = resolve_genotype(config, genotype)
    wd = TrainWorkdir(os.fspath(workdir))
    if os.path.isdir(wd.checkpoints) and os.listdir(wd.checkpoints):
        raise RunError(f"{wd.root} already has checkpoints; import into a fresh --workdir")
    if os.path.isfile(wd.config):
        raise RunError(f"{wd.root} already holds a run ({wd.config}); use a fresh --workdir")
    trainer = _trainer(config, genotype)
    shape = _input_shape(config)
    sd = read_state_dict(checkpoint)
    variables = variables_from_state_dict(trainer.model, sd, shape)
    params = jax.tree.map(jnp.asarray, variables["params"])
    rng = jax.random.split(jax.random.key(int(config.seed)))[1]
    state = TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        batch_stats=jax.tree.map(jnp.asarray, variables.get("batch_stats", {})),
        opt_state=trainer.tx.init(params),
        rng=jax.random.key_data(rng),
    )
    counts = {k: int(v) for k, v in sd.items() if k.endswith("." + _NBT)}
    wd.make()
    import orbax.checkpoint as ocp

    mngr = checkpoint_manager(wd.checkpoints, 1)
    try:
        mngr.save(0, args=ocp.args.StandardSave(state), force=True)
        mngr.wait_until_finished()
    finally:
        mngr.close()
    search_spaces.space_of(genotype).save(genotype, wd.genotype)
    write_json(
        wd.path(IMPORT_JSON),
        {"source": os.path.abspath(os.fspath(checkpoint)), "num_batches_tracked": counts},
    )
    write_text(wd.config, config_to_json(config) + "\n")  # last: a workdir `eval` accepts
    return {
        "workdir": wd.root,
        "checkpoint": os.path.join(wd.checkpoints, "0"),
        "params": int(sum(np.size(a) for a in jax.tree.leaves(variables["params"]))),
        "tensors": len(sd),
    }


def export_torch(
    checkpoint: str | os.PathLike, out: str | os.PathLike, *, which: str = "best"
) -> dict[str, Any]:
    """Write a retraining checkpoint's weights as a reference ``state_dict``.

    Args:
      checkpoint: a ``jaxnas train`` (or :func:`import_torch`) workdir, which uses its
        ``which`` state (``"best"``, else the latest), or a checkpoint folder inside it.
      out: ``.pt`` (needs PyTorch) or ``.npz``.

    Returns:
      ``{"out", "checkpoint", "tensors"}``.

    Raises:
      RunError: not a train workdir, or a network that has no reference layout.
    """
    if not os.fspath(out).endswith(".npz"):  # a missing extra: one line before any work
        require("torch", "writing a .pt checkpoint")
    root, step, folder_which, config = loop.eval_target(checkpoint, "train")
    wd = TrainWorkdir(root)
    genotype = resolve_genotype(config, wd.genotype)
    trainer = _trainer(config, genotype)
    shape = _input_shape(config)
    _expected(trainer.model, shape)  # a network without a reference layout: before reading
    target = _zero_state(trainer, shape)
    state, folder, step = restore_for_eval(
        wd.best, wd.checkpoints, target, which=folder_which or which, step=step, root=root
    )
    trained = int(state.step) * int(config.train.accumulate)
    counts: dict[str, int] = {}
    try:
        with open(wd.path(IMPORT_JSON), encoding="utf-8") as f:
            counts = {k: int(v) for k, v in json.load(f)["num_batches_tracked"].items()}
    except (OSError, ValueError, KeyError):
        pass
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    nbt_keys = [k for k in state_dict_shapes(trainer.model, shape) if k.endswith(_NBT)]
    nbt = {k: counts.get(k, 0) + trained for k in nbt_keys}
    sd = state_dict_from_variables(trainer.model, variables, shape, nbt)
    write_state_dict(sd, out)
    return {
        "out": os.fspath(out),
        "checkpoint": os.path.join(folder, str(step)),
        "tensors": len(sd),
    }
