"""The search spaces as objects: one interface, one object per space.

A :class:`SearchSpace` says everything the rest of jaxnas asks of a space, so that
no method, run or trainer tests which space it has (``space == "nb201"``,
``isinstance(genotype, NB201Arch)``):

==========================  ==========================================================
``name``                    the value of ``model.space`` (``"darts"``, ``"nb201"``,
                            ``"rnn"``)
``topology``, ``edge_labels``  the cell's edges (rows of the architecture matrix)
``resolve_primitives``      ``model.primitives`` as the op names of the columns
``supernet(mixer, ...)``    the search network whose edges mix their ops by ``mixer``
``derive(weights, ...)``    the space's rule from architecture weights to a genotype
``one_hot(genotype, ...)``  the architecture weights that select ``genotype``
``check_genotype``,         the network that retrains a genotype
``discrete_network``
``owns``, ``to_json``,      the genotype's type and files (``genotype.json``)
``from_json``, ``save``,
``load``, ``maybe_load``,
``get_genotype``
``save_pictures``           the pictures a run draws of the genotype
``has_benchmark``,          the tabular benchmark's record of a genotype, where the
``check_benchmark``,        space has one (NATS-Bench for NAS-Bench-201)
``lookup``
==========================  ==========================================================

The objects delegate to the modules that implement each space:

- :data:`DARTS_SPACE`: the DARTS CNN cell (Liu et al., 2019): :mod:`jaxnas.spaces.darts`
  (topology), :mod:`jaxnas.spaces.darts_genotype` / ``darts_derive`` / ``darts_zoo``
  (genotype, DARTS rule, named cells), :mod:`jaxnas.spaces.drawing`,
  :class:`jaxnas.supernet.SuperNet`, :mod:`jaxnas.models.darts_net`;
- :data:`NB201_SPACE`: NAS-Bench-201's cell (Dong & Yang, 2020): :mod:`jaxnas.spaces.nb201`,
  :mod:`jaxnas.models.nb201_net`;
- :data:`RNN_SPACE`: DARTS' recurrent cell: :mod:`jaxnas.rnn` (pure functions, not Flax
  modules, :mod:`jaxnas.rnn.model`); its supernet for an edge mixer is a language model,
  :meth:`RNNSpace.lm_supernet` (:class:`jaxnas.rnn.supernet.RNNSuperNet`: the mixer's
  ``edge_weights``, ``active`` and ``combine``; a mixer with ``edge_input`` or
  ``combiner``, BayesNAS' or ASM-NAS', is a one-line ``ValueError``), not the image
  :meth:`~SearchSpace.supernet`; it has no discrete Flax network
  (:meth:`RNNSpace.discrete_network` raises: :mod:`jaxnas.train_rnn` retrains a cell).

:func:`get` finds a space by name, :func:`space_of` the space of a genotype and
:func:`resolve_genotype` reads a genotype of one of several spaces from a name, an arch
string or a file.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

import flax.linen as nn
import numpy as np

from jaxnas import ops
from jaxnas.models.darts_net import (
    NetworkCIFAR,
    NetworkImageNet,
    check_genotype,
    one_hot_arch,
)
from jaxnas.models.nb201_net import NB201SuperNet, network_for_training
from jaxnas.ops import OpsConfig
from jaxnas.rnn.draw import save_pictures as save_rnn_pictures
from jaxnas.rnn.genotype import (
    RNN_OPS,
    RNN_PRIMITIVES,
    STEPS,
    RNNGenotype,
    derive_darts_rnn,
    derive_rnn,
    get_rnn_genotype,
)
from jaxnas.rnn.model import supernet_arch_for
from jaxnas.rnn.supernet import RNNSuperNet
from jaxnas.spaces import nb201
from jaxnas.spaces.darts import DARTS_CELL, CellTopology
from jaxnas.spaces.darts_derive import derive
from jaxnas.spaces.darts_genotype import KNOWN_OPS, Genotype, from_json, load, save, to_json
from jaxnas.spaces.darts_zoo import NAMED_GENOTYPES, get_genotype
from jaxnas.spaces.drawing import plot_genotype
from jaxnas.supernet import Mixer, SuperNet, resolve_remat

__all__ = [
    "DARTS_SPACE",
    "NB201_SPACE",
    "RNN_SPACE",
    "SPACES",
    "DartsSpace",
    "NB201Space",
    "RNNSpace",
    "SearchSpace",
    "get",
    "resolve_genotype",
    "space_of",
]


class SearchSpace:
    """What every search space provides (the table in the module docstring).

    A subclass sets the class attributes and overrides the methods its space has; a
    method it does not override raises ``NotImplementedError`` naming the space, and
    :meth:`lookup` returns None (no benchmark).

    Attributes:
      name: the value of ``model.space`` that selects this space.
      genotype_type: the class of this space's discrete architectures.
      topology: the cell's edges, ``(src, dst)`` node ids in the row order of the
        architecture matrix ``(n_edges, n_ops)``.
      primitives: the space's default candidate ops (the columns).
      arch_names: the entries of the ``"arch"`` collection (or of ``arch_weights``)
        with one cell type each, e.g. ``("normal", "reduce")``.
      has_benchmark: whether :meth:`lookup` can read a tabular benchmark.
    """

    name: str
    genotype_type: type
    topology: CellTopology
    primitives: tuple[str, ...]
    arch_names: tuple[str, ...]
    has_benchmark: bool = False

    def __repr__(self) -> str:
        return f"<search space {self.name!r}>"

    # ---- ops and edges -------------------------------------------------------------

    @property
    def edge_labels(self) -> tuple[str, ...]:
        """A name per edge (row) for the architecture-weight plots; ``()``: the plots
        number the edges."""
        return ()

    def resolve_primitives(self, spec: str | Sequence[str]) -> tuple[str, ...]:
        """``model.primitives`` (a name or op names) as this space's column ops."""
        raise NotImplementedError(f"the {self.name} space has no op registry")

    # ---- networks ------------------------------------------------------------------

    #: the search network's Flax class (None: the space has no supernet with mixers)
    supernet_class: type[nn.Module] | None = None

    def supernet(
        self,
        mixer: Mixer,
        *,
        num_classes: int,
        model: Mapping[str, Any],
        primitives: Sequence[str],
        cfg: OpsConfig,
        reductions: Sequence[int] | None = None,
    ) -> nn.Module:
        """The search network whose every edge mixes its ops by ``mixer``.

        ``__call__(x (B, H, W, C_in), train, step_input=None) -> logits (B, num_classes)``;
        its ``"arch"`` collection holds one ``(topology.n_edges, len(primitives))`` array
        per entry of ``arch_names``, or per layer with ``reductions``.

        Args:
          mixer: how an edge mixes its ops (:class:`jaxnas.supernet.Mixer`).
          num_classes: classifier outputs.
          model: the config's ``model`` section (``init_channels``, ``layers``,
            ``remat`` (:func:`jaxnas.supernet.resolve_remat`) and what
            :meth:`supernet_fields` reads).
          primitives: the ops of the columns (:meth:`resolve_primitives`).
          cfg: how the ops compute (depthwise implementation, dtype).
          reductions: one architecture per layer (``arch_sharing="cell"``) with the
            reduction cells at these 0-based layers; None: one per cell type.
        """
        if self.supernet_class is None:
            raise NotImplementedError(f"the {self.name} space has no supernet with edge mixers")
        return self.supernet_class(
            num_classes=num_classes,
            init_channels=model["init_channels"],
            primitives=tuple(primitives),
            mixer=mixer,
            cfg=cfg,
            remat=resolve_remat(model["remat"]),
            **self.supernet_fields(model, reductions),
        )

    def supernet_fields(
        self, model: Mapping[str, Any], reductions: Sequence[int] | None
    ) -> dict[str, Any]:
        """The fields of :attr:`supernet_class` that are this space's own (depth, stem,
        per-layer architectures)."""
        raise NotImplementedError

    def check_genotype(
        self, genotype: Any, layers: int, reductions: Sequence[int] | None = None
    ) -> None:
        """Raise a one-line ``GenotypeError`` unless ``genotype`` builds into a
        ``layers``-cell network (before anything compiles); by default nothing to check
        beyond what parsing the genotype checked."""

    def discrete_network(
        self,
        genotype: Any,
        num_classes: int,
        *,
        model: Mapping[str, Any],
        cfg: OpsConfig,
        family: str = "cifar",
    ) -> nn.Module:
        """The network that retrains ``genotype``.

        ``__call__(x (B, H, W, C_in), train, ...) -> (logits (B, num_classes), aux)``.

        Args:
          genotype: one of this space's genotypes.
          num_classes: classifier outputs.
          model: a retraining config's ``model`` section: ``init_channels``, ``layers``,
            ``auxiliary``, ``scan_cells``, ``reductions`` (empty: the default positions),
            and what :meth:`network_builder` reads.
          cfg: how the ops compute (depthwise implementation, dtype, grouped ops).
          family: ``"cifar"`` or ``"imagenet"`` (stem and auxiliary head).
        """
        build = self.network_builder(family, model)
        return build(
            genotype,
            num_classes,
            init_channels=int(model["init_channels"]),
            layers=int(model["layers"]),
            auxiliary=bool(model["auxiliary"]),
            scan_cells=bool(model["scan_cells"]),
            cfg=cfg,
            reductions=tuple(int(r) for r in model["reductions"]) or None,
        )

    def network_builder(self, family: str, model: Mapping[str, Any]) -> Callable[..., nn.Module]:
        """``build(genotype, num_classes, **fields)`` of :meth:`discrete_network`."""
        raise NotImplementedError(f"the {self.name} space has no discrete Flax network")

    # ---- derivation ----------------------------------------------------------------

    def derive(
        self, weights: Mapping[str, Any], primitives: Sequence[str] | None = None, **rule: Any
    ) -> Any:
        """The genotype the architecture weights ``{arch name: (n_edges, n_ops)}``
        derive to by this space's rule (``rule``: the rule's options)."""
        raise NotImplementedError(f"the {self.name} space has no derivation rule")

    def one_hot(self, genotype: Any, primitives: Sequence[str] | None = None) -> dict[str, Any]:
        """``{arch name: (n_edges, n_ops)}`` with weight on exactly the genotype's
        ``(edge, op)`` pairs, 0 elsewhere: the architecture that selects ``genotype``."""
        raise NotImplementedError(f"the {self.name} space has no one-hot architecture")

    # ---- genotype files ------------------------------------------------------------

    def owns(self, genotype: Any) -> bool:
        """Whether ``genotype`` is one of this space's architectures."""
        return isinstance(genotype, self.genotype_type)

    def to_json(self, genotype: Any) -> str:
        """The text of this space's ``genotype.json`` for ``genotype``."""
        raise NotImplementedError

    def from_json(self, text: str) -> Any:
        """The genotype of :meth:`to_json`'s text (one-line ``GenotypeError`` if malformed)."""
        raise NotImplementedError

    def save(self, genotype: Any, path: str | os.PathLike[str]) -> None:
        """Write :meth:`to_json` to ``path`` atomically."""
        raise NotImplementedError

    def load(self, path: str | os.PathLike[str], *, strict: bool = True) -> Any:
        """Read a file written by :meth:`save`; ``strict=False`` checks the structure
        only, not that every op is registered (to redraw a workdir whose method
        registered its own ops)."""
        raise NotImplementedError

    def maybe_load(self, spec: Any) -> Any | None:
        """``spec`` (a genotype, a name, an arch string or a file) as this space's
        genotype when it is one, else None; a malformed one of this space still raises."""
        raise NotImplementedError

    def get_genotype(self, spec: Any, *, strict: bool = True) -> Any:
        """``spec`` as this space's genotype, or a one-line ``GenotypeError`` saying what
        this space accepts (the reader of a config's ``model.genotype``)."""
        raise NotImplementedError

    # ---- pictures and benchmark ----------------------------------------------------

    def save_pictures(self, genotype: Any, path_prefix: str | os.PathLike[str]) -> list[str]:
        """Draw ``genotype`` to files named ``{path_prefix}_*.{png,svg}``; the paths."""
        raise NotImplementedError(f"the {self.name} space has no pictures")

    def check_benchmark(self, benchmark: str | os.PathLike[str]) -> None:
        """One-line ``ValueError`` (or ``ImportError``) unless :meth:`lookup` can read
        ``benchmark``, before a search starts."""
        raise ValueError(f"the {self.name} space has no tabular benchmark")

    def lookup(self, genotype: Any, benchmark: Any, **options: Any) -> dict[str, Any] | None:
        """The benchmark's record of ``genotype`` (accuracies, cost); None where the
        space has no benchmark."""
        del genotype, benchmark, options
        return None


# ------------------------------------------------------------------------------ DARTS


class DartsSpace(SearchSpace):
    """The DARTS CNN cell: 2 inputs, 4 nodes, 14 edges; a normal and a reduction cell."""

    name = "darts"
    genotype_type = Genotype
    topology = DARTS_CELL
    primitives = ops.DARTS_PRIMITIVES
    arch_names = ("normal", "reduce")
    supernet_class = SuperNet

    def resolve_primitives(self, spec: str | Sequence[str]) -> tuple[str, ...]:
        """:func:`jaxnas.ops.resolve_primitives` (``"darts"``, a list of registered ops)."""
        return ops.resolve_primitives(spec)

    def supernet_fields(
        self, model: Mapping[str, Any], reductions: Sequence[int] | None
    ) -> dict[str, Any]:
        """:class:`jaxnas.supernet.SuperNet`'s ``layers`` cells, stem
        ``stem_multiplier * C``; with ``reductions`` one architecture per layer."""
        fields = dict(layers=model["layers"], stem_multiplier=model["stem_multiplier"])
        if reductions is not None:
            fields.update(arch_sharing="cell", reductions=tuple(reductions))
        return fields

    def check_genotype(
        self, genotype: Genotype, layers: int, reductions: Sequence[int] | None = None
    ) -> None:
        """:func:`jaxnas.models.darts_net.check_genotype`: registered ops, two inputs per
        cell, per-layer cells and reduction positions that fit ``layers``."""
        check_genotype(genotype, layers, reductions)

    def network_builder(self, family: str, model: Mapping[str, Any]) -> Callable[..., nn.Module]:
        """``NetworkCIFAR`` (``family="cifar"``) or ``NetworkImageNet`` with ``remat``
        from ``model.remat`` (:func:`jaxnas.supernet.resolve_remat`: ``None`` is on for
        the CPU); drop path is the trainer's per-step argument, not a field."""
        cls = NetworkCIFAR if family == "cifar" else NetworkImageNet
        return functools.partial(cls, remat=resolve_remat(model.get("remat")))

    def derive(
        self, weights: Mapping[str, Any], primitives: Sequence[str] | None = None, **rule: Any
    ) -> Genotype:
        """:func:`jaxnas.spaces.darts_derive.derive` of ``weights["normal"]``,
        ``weights["reduce"]`` (``(14, n_ops)`` each): per node the 2 strongest edges, per
        edge its strongest op other than ``none`` (``rule``: ``k``, ``exclude``,
        ``threshold``)."""
        prims = self.primitives if primitives is None else primitives
        return derive(weights["normal"], weights["reduce"], prims, self.topology, **rule)

    def one_hot(
        self, genotype: Genotype, primitives: Sequence[str] | None = None
    ) -> dict[str, np.ndarray]:
        """``{"normal", "reduce"}`` of :func:`jaxnas.models.darts_net.one_hot_arch`; a
        per-layer genotype (``genotype.cells``) gets ``{"layer_00", ...}``, the
        ``"arch"`` names of ``SuperNet(arch_sharing="cell")``."""
        prims = self.primitives if primitives is None else primitives
        sharing = "cell_type" if genotype.cells is None else "cell"
        layers = len(genotype.cells or ())
        arch = one_hot_arch(genotype, layers, primitives=prims, arch_sharing=sharing)
        return {k: np.asarray(v) for k, v in arch.items()}

    def to_json(self, genotype: Genotype) -> str:
        """:func:`jaxnas.spaces.darts_genotype.to_json` (the DARTS dict when it can)."""
        return to_json(genotype)

    def from_json(self, text: str) -> Genotype:
        """:func:`jaxnas.spaces.darts_genotype.from_json` (either form, validated)."""
        return from_json(text)

    def save(self, genotype: Genotype, path: str | os.PathLike[str]) -> None:
        """:func:`jaxnas.spaces.darts_genotype.save`."""
        save(genotype, path)

    def load(self, path: str | os.PathLike[str], *, strict: bool = True) -> Genotype:
        """:func:`jaxnas.spaces.darts_genotype.load` (op names checked against
        ``KNOWN_OPS`` when ``strict``)."""
        return load(path, known_ops=KNOWN_OPS if strict else None)

    def maybe_load(self, spec: Any) -> Genotype | None:
        """A :class:`Genotype`, a registered name, or a JSON file with a ``"normal"``
        key (read by :meth:`load`); else None."""
        if isinstance(spec, Genotype):
            return spec
        if not isinstance(spec, (str, os.PathLike)):
            return None
        key = os.fspath(spec)
        if key in NAMED_GENOTYPES:
            return NAMED_GENOTYPES[key]
        obj = _json_object(key)
        return self.load(key) if obj is not None and "normal" in obj else None

    def get_genotype(self, spec: Any, *, strict: bool = True) -> Genotype:
        """:func:`jaxnas.spaces.darts_zoo.get_genotype` (a registered name or a file)."""
        if isinstance(spec, Genotype):
            return spec
        if not strict and os.path.isfile(os.fspath(spec)):
            return self.load(spec, strict=False)
        return get_genotype(spec)

    def save_pictures(self, genotype: Genotype, path_prefix: str | os.PathLike[str]) -> list[str]:
        """:func:`jaxnas.spaces.drawing.plot_genotype`: ``{prefix}_normal``, ``_reduce``
        (and ``_cell{i:02d}`` per layer) ``.png`` and ``.svg``."""
        return plot_genotype(genotype, path_prefix)


# ------------------------------------------------------------------------------ NB201


class NB201Space(SearchSpace):
    """NAS-Bench-201's cell: 1 input, 3 nodes, 6 edges, 5 ops; one cell for the whole
    network; NATS-Bench's record of every cell (:mod:`jaxnas.spaces.nb201`)."""

    name = "nb201"
    genotype_type = nb201.NB201Arch
    topology = nb201.NB201_CELL
    primitives = nb201.NB201_PRIMITIVES
    arch_names = ("cell",)
    supernet_class = NB201SuperNet
    has_benchmark = True

    @property
    def edge_labels(self) -> tuple[str, ...]:
        """``"src->dst"`` per edge: ``0->1, 0->2, 1->2, 0->3, 1->3, 2->3``."""
        return tuple(f"{i}->{j}" for i, j in self.topology.edges)

    def resolve_primitives(self, spec: str | Sequence[str]) -> tuple[str, ...]:
        """:func:`jaxnas.spaces.nb201.resolve_primitives` (``"nb201"`` or some of its ops)."""
        return nb201.resolve_primitives(spec)

    def supernet_fields(
        self, model: Mapping[str, Any], reductions: Sequence[int] | None
    ) -> dict[str, Any]:
        """:class:`jaxnas.models.nb201_net.NB201SuperNet`'s ``model.layers`` cells per
        stage; one cell for all layers, so no per-layer architectures."""
        if reductions is not None:
            raise ValueError("the nb201 space shares one cell: no per-layer architectures")
        return dict(cells_per_stage=model["layers"])

    def network_builder(self, family: str, model: Mapping[str, Any]) -> Callable[..., nn.Module]:
        """:func:`jaxnas.models.nb201_net.network_for_training` (``layers`` cells per
        stage; one-line ``ValueError`` on an auxiliary head, ``model.drop_path_prob`` or
        reductions)."""
        return functools.partial(network_for_training, drop_path_prob=model["drop_path_prob"])

    def derive(
        self, weights: Mapping[str, Any], primitives: Sequence[str] | None = None, **rule: Any
    ) -> nb201.NB201Arch:
        """:func:`jaxnas.spaces.nb201.derive` of ``weights["cell"]`` ``(6, n_ops)``: every
        edge keeps its strongest op, ``none`` included (no options)."""
        if rule:
            raise TypeError(f"the nb201 rule has no options, got {sorted(rule)}")
        prims = self.primitives if primitives is None else primitives
        return nb201.derive(weights["cell"], prims)

    def one_hot(
        self, genotype: nb201.NB201Arch, primitives: Sequence[str] | None = None
    ) -> dict[str, np.ndarray]:
        """``{"cell": nb201.one_hot(genotype)}``."""
        prims = self.primitives if primitives is None else primitives
        return {"cell": nb201.one_hot(genotype, prims)}

    def to_json(self, genotype: nb201.NB201Arch) -> str:
        """``{"format": "jaxnas-nb201-v1", "arch": "|...|"}``."""
        return genotype.to_json()

    def from_json(self, text: str) -> nb201.NB201Arch:
        """:func:`jaxnas.spaces.nb201.from_json`."""
        return nb201.from_json(text)

    def save(self, genotype: nb201.NB201Arch, path: str | os.PathLike[str]) -> None:
        """:func:`jaxnas.spaces.nb201.save`."""
        nb201.save(genotype, path)

    def load(self, path: str | os.PathLike[str], *, strict: bool = True) -> nb201.NB201Arch:
        """:func:`jaxnas.spaces.nb201.load` (the ops are NAS-Bench-201's: ``strict`` is moot)."""
        del strict
        return nb201.load(path)

    def maybe_load(self, spec: Any) -> nb201.NB201Arch | None:
        """:func:`jaxnas.spaces.nb201.maybe_load`: a cell, an arch string or its JSON file."""
        return nb201.maybe_load(spec)

    def get_genotype(self, spec: Any, *, strict: bool = True) -> nb201.NB201Arch:
        """:meth:`maybe_load`, or a one-line ``NB201Error``."""
        arch = nb201.maybe_load(spec)
        if arch is None:
            raise nb201.NB201Error(f"{spec!r} is neither an NB201 arch string nor its JSON")
        return arch

    def save_pictures(
        self, genotype: nb201.NB201Arch, path_prefix: str | os.PathLike[str]
    ) -> list[str]:
        """``{prefix}_cell.png`` and ``.svg`` (:func:`jaxnas.spaces.nb201.plot_arch`)."""
        return genotype.save_pictures(path_prefix)

    def check_benchmark(self, benchmark: str | os.PathLike[str]) -> None:
        """``nats_bench`` is installed (else ``NATSBenchMissing``) and ``benchmark`` exists."""
        nb201.require_nats_bench()
        nb201.check_benchmark_path(benchmark)

    def lookup(self, genotype: Any, benchmark: Any, **options: Any) -> dict[str, Any] | None:
        """:func:`jaxnas.spaces.nb201.lookup`: NATS-Bench's accuracies of the cell."""
        return nb201.lookup(genotype, benchmark, **options)


# -------------------------------------------------------------------------------- RNN


class RNNSpace(SearchSpace):
    """DARTS' recurrent cell: ``s_0`` from ``(x_t, h_{t-1})``, 8 nodes, each reading every
    earlier state: 36 edges (row ``i (i - 1) / 2 + j`` for ``s_j -> s_i``, which is
    :data:`topology`'s order), 4 activations (:mod:`jaxnas.rnn.genotype`), or DARTS' 5
    primitives with ``none``.

    Its cells are pure functions of the weights and the architecture
    (:mod:`jaxnas.rnn.model`), not Flax modules: the search network of an edge mixer is
    :meth:`lm_supernet` (a language model over token windows), and :meth:`supernet` (an
    image classifier's interface) and :meth:`discrete_network` raise
    ``NotImplementedError``.
    """

    name = "rnn"
    genotype_type = RNNGenotype
    topology = CellTopology(n_inputs=1, n_nodes=STEPS)
    primitives = RNN_OPS
    arch_names = ("recurrent",)

    @property
    def edge_labels(self) -> tuple[str, ...]:
        """``"s{j}->s{i}"`` per edge."""
        return tuple(f"s{j}->s{i}" for j, i in self.topology.edges)

    def resolve_primitives(self, spec: str | Sequence[str]) -> tuple[str, ...]:
        """``"rnn"`` (or ``RNN_OPS`` spelled out): the 4 activations (SparseNAS: ``A = 0``
        is the zero op); ``"darts_rnn"`` (or ``RNN_PRIMITIVES``): DARTS' 5 with ``none``
        first (a softmax needs it to switch an edge off)."""
        if spec == "rnn" or tuple(spec) == RNN_OPS:
            return RNN_OPS
        if spec == "darts_rnn" or tuple(spec) == RNN_PRIMITIVES:
            return RNN_PRIMITIVES
        raise ValueError(f"the rnn space searches {RNN_OPS} or {RNN_PRIMITIVES}, got {spec!r}")

    def supernet(self, mixer: Mixer, **kwargs: Any) -> nn.Module:
        """``NotImplementedError``: no image supernet; :meth:`lm_supernet` is this space's."""
        del mixer, kwargs
        raise NotImplementedError(
            "the rnn space has no supernet of images: its search network is the language "
            "model RNN_SPACE.lm_supernet(mixer, vocab_size=..., model=..., primitives=...)"
        )

    def lm_supernet(
        self,
        mixer: Mixer,
        *,
        vocab_size: int,
        model: Mapping[str, Any],
        primitives: Sequence[str],
    ) -> RNNSuperNet:
        """The recurrent language-model supernet whose every edge mixes its ops by ``mixer``
        (:class:`jaxnas.rnn.supernet.RNNSuperNet`, DARTS Eq. 1 on the recurrent cell).

        ``net.init(rng)`` the weights, ``net.init_arch(rng)`` ``{"recurrent": (n_edges,
        len(primitives))}``, ``net.apply(params, arch, tokens (B, T), hidden (B, H),
        length, dropouts=, rng=, train=, mixer_rng=, step_input=) -> (logits (B, T, V),
        hidden, raw)``.

        Args:
          mixer: how an edge mixes its ops (one-line ``ValueError`` for a mixer with an
            ``edge_input`` or ``combiner`` hook).
          vocab_size: the vocabulary (the decoder's outputs).
          model: the config's ``model`` section: ``size``, ``steps``, ``batchnorm``,
            ``scan_nodes``.
          primitives: the ops of the columns (:meth:`resolve_primitives`).
        """
        return RNNSuperNet(
            mixer,
            int(vocab_size),
            int(model["size"]),
            int(model["steps"]),
            tuple(primitives),
            batchnorm=bool(model["batchnorm"]),
            scan_nodes=bool(model["scan_nodes"]),
        )

    def derive(
        self, weights: Mapping[str, Any], primitives: Sequence[str] | None = None, **rule: Any
    ) -> RNNGenotype:
        """:func:`jaxnas.rnn.genotype.derive_rnn` of ``weights["recurrent"]`` ``(36, n_ops)``:
        SparseNAS' mixed paths, every pair with ``|theta| > threshold`` whose source
        survives (``rule``: ``threshold``, ``exclude``); with ``rule="darts"``
        :func:`jaxnas.rnn.genotype.derive_darts_rnn`: DARTS' one pair per node (no other
        options)."""
        prims = self.primitives if primitives is None else primitives
        if rule.get("rule") == "darts":
            if len(rule) > 1:
                raise TypeError(f"the darts rule has no options, got {sorted(rule)}")
            return derive_darts_rnn(weights["recurrent"], prims)
        return derive_rnn(weights["recurrent"], prims, **rule)

    def one_hot(
        self, genotype: RNNGenotype, primitives: Sequence[str] | None = None
    ) -> dict[str, np.ndarray]:
        """``{"recurrent": supernet_arch_for(genotype)}`` (``1/k`` on a node's ``k`` pairs)."""
        prims = self.primitives if primitives is None else primitives
        return {"recurrent": supernet_arch_for(genotype, prims)}

    def to_json(self, genotype: RNNGenotype) -> str:
        """``RNNGenotype.to_json`` and a newline (the text of its ``genotype.json``)."""
        return genotype.to_json() + "\n"

    def from_json(self, text: str) -> RNNGenotype:
        """``RNNGenotype.from_json``."""
        return RNNGenotype.from_json(text)

    def save(self, genotype: RNNGenotype, path: str | os.PathLike[str]) -> None:
        """``RNNGenotype.save_json``."""
        genotype.save_json(path)

    def load(self, path: str | os.PathLike[str], *, strict: bool = True) -> RNNGenotype:
        """``RNNGenotype.load`` (the ops are checked on construction: ``strict`` is moot)."""
        del strict
        return RNNGenotype.load(path)

    def maybe_load(self, spec: Any) -> RNNGenotype | None:
        """An :class:`RNNGenotype`, or a JSON file with ``"kind": "rnn"``; else None."""
        if isinstance(spec, RNNGenotype):
            return spec
        obj = _json_object(spec) if isinstance(spec, (str, os.PathLike)) else None
        return RNNGenotype.from_dict(obj) if obj is not None and obj.get("kind") == "rnn" else None

    def get_genotype(self, spec: Any, *, strict: bool = True) -> RNNGenotype:
        """:func:`jaxnas.rnn.genotype.get_rnn_genotype` (``darts_v1``, ``darts_v2``, a file)."""
        return spec if isinstance(spec, RNNGenotype) else get_rnn_genotype(spec)

    def save_pictures(
        self, genotype: RNNGenotype, path_prefix: str | os.PathLike[str]
    ) -> list[str]:
        """``{prefix}_recurrent.png`` and ``.svg`` (:func:`jaxnas.rnn.draw.save_pictures`)."""
        return save_rnn_pictures(genotype, path_prefix)


def _json_object(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The JSON object in the file ``path``; None if there is no such file or it holds
    no JSON object (then it is not this space's: another reader reports it)."""
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            obj = json.load(f)
    except (OSError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None


# ------------------------------------------------------------------------------ lookup

DARTS_SPACE = DartsSpace()
NB201_SPACE = NB201Space()
RNN_SPACE = RNNSpace()

#: Every space by name (``model.space``).
SPACES: dict[str, SearchSpace] = {s.name: s for s in (DARTS_SPACE, NB201_SPACE, RNN_SPACE)}


def get(name: str) -> SearchSpace:
    """The space called ``name`` (one-line ``ValueError`` naming the known ones)."""
    try:
        return SPACES[name]
    except KeyError:
        raise ValueError(f"unknown search space {name!r}; known: {', '.join(SPACES)}") from None


def space_of(genotype: Any) -> SearchSpace:
    """The space whose genotype ``genotype`` is (``TypeError`` if none owns it)."""
    for space in SPACES.values():
        if space.owns(genotype):
            return space
    raise TypeError(f"no search space owns a {type(genotype).__name__}")


def resolve_genotype(
    spec: Any, names: Collection[str] = ("nb201", "darts"), *, strict: bool = True
) -> Any:
    """``spec`` as a genotype of one of the spaces ``names``.

    A genotype of any of them is returned as it is; otherwise the first of all but the
    last space whose :meth:`~SearchSpace.maybe_load` claims ``spec`` (an NB201 arch
    string or JSON, say) reads it, and else the last space's
    :meth:`~SearchSpace.get_genotype` does (its one-line ``GenotypeError`` when ``spec``
    is none of them).  ``strict``: see :meth:`SearchSpace.load`.
    """
    spaces = [get(n) for n in names]
    for space in spaces:
        if space.owns(spec):
            return spec
    for space in spaces[:-1]:
        genotype = space.maybe_load(spec)
        if genotype is not None:
            return genotype
    return spaces[-1].get_genotype(spec, strict=strict)
