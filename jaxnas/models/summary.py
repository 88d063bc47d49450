"""Size of a network without training it: parameters and multiply-adds.

Conventions (those of the DARTS / NASNet papers and the DARTS code's
``utils.count_parameters_in_MB``):

* **Parameters**: every leaf of the ``"params"`` collection, i.e. conv and dense
  weights, dense biases, BN scale and bias; BN running statistics
  (``"batch_stats"``) are not parameters.  Leaves under a module whose name
  contains ``"auxiliary"`` are left out (the reference filters ``"auxiliary" not
  in name``): the auxiliary head only exists in training.
* **Multiply-adds** (MACs) for a *single image* at inference (no auxiliary head,
  no drop path): for every convolution (including 1x1 convs, written here as
  dense layers, and the depthwise convs of separable/dilated convs)
  ``MACs = (output elements) * (kernel height * width) * (input channels / groups)``,
  and for every dense layer ``(output elements) * (input features)``.  BN,
  activations, pooling, additions and biases are not counted.  They are read
  off the layers the forward pass actually calls (a Flax method interceptor
  records each ``nn.Conv``, ``nn.Dense``, ``Pointwise`` (the ops' 1x1 conv) and
  ``DepthwiseConv`` call with its input and output shapes), under
  ``jax.eval_shape``: nothing is compiled or run.

For DARTS_V2 these give 3,349,342 parameters / 528.4M multiply-adds on
CIFAR-10 (C=36, 20 layers, 32x32; the paper reports 3.3M parameters) and
4,718,752 / 529.9M on ImageNet in the mobile setting (C=48, 14 layers,
224x224; the paper reports 4.7M and 574M).  The parameter counts are exact;
the multiply-adds are 7.7% below the paper's.  The DARTS authors did not
publish how they counted (quark0/darts issue #46): another conv + fc count of
DARTS_V2 gave 523M there, and a counter that also counts BN, activations and
pooling (ptflops) 545M.  Counting BN as one multiply-add per element would add
4.1M here; the pooling ops of the reduction cells are 0.14M output elements.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxnas.models.darts_net import DATASET_SPECS, make_network
from jaxnas.ops import DepthwiseConv, Pointwise
from jaxnas.spaces.darts_genotype import Genotype

__all__ = ["LayerMACs", "count_macs", "count_params", "format_summary", "layer_macs", "summary"]


def _key_name(k: Any) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(k, attr):
            return str(getattr(k, attr))
    return str(k)


def count_params(params: Any, exclude: Sequence[str] = ("auxiliary",)) -> int:
    """Number of scalars in ``params`` (arrays or ``ShapeDtypeStruct``s).

    Args:
      params: the ``"params"`` collection (a pytree); pass ``variables["params"]``,
        not the whole variables dict, unless you want running statistics counted.
      exclude: leaves whose path has a key containing any of these substrings are
        skipped (default: the auxiliary head).

    Returns:
      ``sum(prod(leaf.shape))`` over the kept leaves.
    """
    total = 0
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        names = [_key_name(k) for k in path]
        if any(ex in name for ex in exclude for name in names):
            continue
        total += math.prod(getattr(leaf, "shape", ()))
    return total


@dataclasses.dataclass(frozen=True)
class LayerMACs:
    """Multiply-adds of one layer call: module path, kind, input/output shapes, MACs."""

    path: str
    kind: str
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    macs: int


def _macs_of(module: nn.Module, x: Any, y: Any) -> tuple[str, int] | None:
    if not hasattr(y, "shape") or not hasattr(x, "shape"):
        return None
    out = math.prod(y.shape)
    if isinstance(module, DepthwiseConv):
        return "depthwise", out * module.kernel_size**2
    if isinstance(module, nn.Conv):
        k = module.kernel_size
        k = (k,) if isinstance(k, int) else tuple(k)
        return "conv", out * math.prod(k) * x.shape[-1] // module.feature_group_count
    if isinstance(module, (nn.Dense, Pointwise)):
        return "dense", out * x.shape[-1]
    return None


def layer_macs(
    model: nn.Module,
    variables: Any,
    input_shape: Sequence[int],
    **call_kwargs: Any,
) -> list[LayerMACs]:
    """Per-layer multiply-adds of ``model.apply(variables, x, **call_kwargs)`` for one image.

    Args:
      model: a Flax module whose call takes the image batch first.
      variables: its variables (arrays or ``ShapeDtypeStruct``s from ``jax.eval_shape``).
      input_shape: ``(H, W, C)`` of one image; the batch is 1.
      call_kwargs: extra call arguments (default ``train=False`` is *not* added here).

    Returns:
      One :class:`LayerMACs` per conv / dense / depthwise call, in call order.

    A network built with ``scan_cells=True`` or ``OpsConfig(group_ops=True)`` traces an
    ``nn.scan`` / ``nn.vmap`` body once for many layers or ops, so it is counted as the
    same network unrolled, one module per op (its variables' shapes are made anew with
    ``jax.eval_shape``; ``variables`` is then not used).
    """
    model, variables = _unrolled(model, variables, input_shape, call_kwargs)
    records: list[LayerMACs] = []

    def interceptor(next_fun, args, kwargs, context):
        y = next_fun(*args, **kwargs)
        if context.method_name == "__call__" and args:
            found = _macs_of(context.module, args[0], y)
            if found is not None:
                kind, macs = found
                path = "/".join(context.module.scope.path) if context.module.scope else ""
                records.append(
                    LayerMACs(path, kind, tuple(args[0].shape), tuple(y.shape), int(macs))
                )
        return y

    def forward(v: Any, x: jax.Array) -> Any:
        with nn.intercept_methods(interceptor):
            return model.apply(v, x, **call_kwargs)

    x = jax.ShapeDtypeStruct((1, *input_shape), jnp.float32)
    jax.eval_shape(forward, variables, x)
    return records


def _unrolled(
    model: nn.Module, variables: Any, input_shape: Sequence[int], call_kwargs: dict
) -> tuple[nn.Module, Any]:
    """``model`` without ``scan_cells`` / ``group_ops`` and its variables' shapes (the
    same module and ``variables`` when it has neither)."""
    scanned = bool(getattr(model, "scan_cells", False))
    cfg = getattr(model, "cfg", None)
    grouped = bool(getattr(cfg, "group_ops", False))
    if not (scanned or grouped):
        return model, variables
    if scanned:
        model = model.clone(scan_cells=False)
    if grouped:
        model = model.clone(cfg=dataclasses.replace(cfg, group_ops=False))
    x = jax.ShapeDtypeStruct((1, *input_shape), jnp.float32)
    return model, jax.eval_shape(lambda x: model.init(jax.random.key(0), x, **call_kwargs), x)


def count_macs(
    model: nn.Module, variables: Any, input_shape: Sequence[int], **call_kwargs: Any
) -> int:
    """Total multiply-adds of one inference forward pass on a single image.

    The sum of :func:`layer_macs` (conv, 1x1 conv, depthwise conv and dense layers;
    see the module docstring for the convention).  ``call_kwargs`` default to
    ``train=False`` (no auxiliary head, no drop path).  Traced with ``jax.eval_shape``:
    cheap, nothing is compiled.
    """
    call_kwargs.setdefault("train", False)
    return sum(r.macs for r in layer_macs(model, variables, input_shape, **call_kwargs))


def summary(genotype: Genotype, dataset: str = "cifar10", **network: Any) -> dict[str, Any]:
    """Parameters and multiply-adds of the evaluation network of ``genotype``.

    Builds :func:`jaxnas.models.darts_net.make_network` with the keywords ``network``
    (``init_channels``, ``layers``, ``num_classes``, ``auxiliary``, ``cfg``,
    ``reductions``: defaults from :data:`~jaxnas.models.darts_net.DATASET_SPECS`, C=36 /
    20 layers for the CIFAR family, C=48 / 14 layers for ImageNet) and traces it with
    ``jax.eval_shape``.  Reduction cells: ``genotype.reductions``, else ``reductions``,
    else DARTS'.

    Returns:
      A JSON-ready dict: ``network``, ``dataset``, ``input_shape``, ``num_classes``,
      ``init_channels``, ``layers``, ``reductions`` (0-based reduction cells),
      ``params`` (without auxiliary head), ``params_M``,
      ``params_auxiliary`` (the head alone, 0 without it), ``macs`` (one image,
      inference), ``macs_M``.
    """
    net, input_shape = make_network(genotype, dataset, **network)
    x = jax.ShapeDtypeStruct((1, *input_shape), jnp.float32)
    variables = jax.eval_shape(lambda x: net.init(jax.random.key(0), x), x)
    params = count_params(variables["params"])
    macs = count_macs(net, variables, input_shape)
    return {
        "network": type(net).__name__,
        "dataset": dataset,
        "input_shape": list(input_shape),
        "num_classes": net.num_classes,
        "init_channels": net.init_channels,
        "layers": net.layers,
        "reductions": list(net.reduction_cells()),
        "params": params,
        "params_M": params / 1e6,
        "params_auxiliary": count_params(variables["params"], exclude=()) - params,
        "macs": macs,
        "macs_M": macs / 1e6,
    }


def format_summary(s: dict[str, Any], name: str = "") -> str:
    """Human-readable lines for a :func:`summary` dict (what ``jaxnas summary`` prints)."""
    shape = "x".join(str(d) for d in s["input_shape"])
    label = f" {name}" if name else ""
    lines = [
        f"network:       {s['network']}{label}: C={s['init_channels']}, {s['layers']} layers, "
        f"{s['num_classes']} classes, input {shape} ({s['dataset']})",
        f"reductions:    cells {', '.join(map(str, s.get('reductions', [])))} (0-based)",
        f"parameters:    {s['params_M']:.2f}M ({s['params']:,}; without the auxiliary head"
        + (f", which adds {s['params_auxiliary']:,}" if s["params_auxiliary"] else "")
        + ")",
        f"multiply-adds: {s['macs_M']:.0f}M ({s['macs']:,} per image, inference)",
    ]
    return "\n".join(lines)


#: Datasets :func:`summary` accepts.
SUMMARY_DATASETS: tuple[str, ...] = tuple(DATASET_SPECS)
