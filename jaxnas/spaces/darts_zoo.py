"""Named DARTS-space genotypes: the published cells and a registry by name.

:data:`NAMED_GENOTYPES` maps a name to a :class:`~jaxnas.spaces.darts_genotype.Genotype`
(``DARTS_V1``, ``DARTS_V2`` = ``DARTS``, ``PRDARTS``); :func:`get_genotype` reads a
name or a genotype JSON file (what ``model.genotype`` of a retraining config holds),
and :func:`register_genotype` adds a name.
"""

from __future__ import annotations

import os

from jaxnas.spaces import GenotypeError
from jaxnas.spaces.darts_genotype import Genotype, load

__all__ = [
    "DARTS",
    "DARTS_V1",
    "DARTS_V2",
    "NAMED_GENOTYPES",
    "PRDARTS",
    "get_genotype",
    "register_genotype",
]

#: DARTS (first order), from the DARTS reference code's genotypes.py.
DARTS_V1 = Genotype.from_darts(
    normal=[
        ("sep_conv_3x3", 1),
        ("sep_conv_3x3", 0),
        ("skip_connect", 0),
        ("sep_conv_3x3", 1),
        ("skip_connect", 0),
        ("sep_conv_3x3", 1),
        ("sep_conv_3x3", 0),
        ("skip_connect", 2),
    ],
    normal_concat=[2, 3, 4, 5],
    reduce=[
        ("max_pool_3x3", 0),
        ("max_pool_3x3", 1),
        ("skip_connect", 2),
        ("max_pool_3x3", 0),
        ("max_pool_3x3", 0),
        ("skip_connect", 2),
        ("skip_connect", 2),
        ("avg_pool_3x3", 0),
    ],
    reduce_concat=[2, 3, 4, 5],
)

#: DARTS (second order), from the DARTS reference code's genotypes.py.
DARTS_V2 = Genotype.from_darts(
    normal=[
        ("sep_conv_3x3", 0),
        ("sep_conv_3x3", 1),
        ("sep_conv_3x3", 0),
        ("sep_conv_3x3", 1),
        ("sep_conv_3x3", 1),
        ("skip_connect", 0),
        ("skip_connect", 0),
        ("dil_conv_3x3", 2),
    ],
    normal_concat=[2, 3, 4, 5],
    reduce=[
        ("max_pool_3x3", 0),
        ("max_pool_3x3", 1),
        ("skip_connect", 2),
        ("max_pool_3x3", 1),
        ("max_pool_3x3", 0),
        ("skip_connect", 2),
        ("skip_connect", 2),
        ("max_pool_3x3", 1),
    ],
    reduce_concat=[2, 3, 4, 5],
)

#: ``DARTS = DARTS_V2`` as in the reference code.
DARTS = DARTS_V2

#: The PR-DARTS cell released with the paper (the authors' ``PRDARTS_eval/genotypes.py``):
#: one skip, and the conv chain c_{k-1} -> 2 -> 3 -> 4 -> 5 that the path regularizer rewards.
PRDARTS = Genotype.from_darts(
    normal=[
        ("skip_connect", 0),
        ("sep_conv_3x3", 1),
        ("dil_conv_3x3", 2),
        ("sep_conv_3x3", 0),
        ("dil_conv_3x3", 3),
        ("sep_conv_3x3", 1),
        ("dil_conv_3x3", 4),
        ("dil_conv_3x3", 1),
    ],
    normal_concat=[2, 3, 4, 5],
    reduce=[
        ("avg_pool_3x3", 0),
        ("dil_conv_5x5", 1),
        ("sep_conv_3x3", 0),
        ("dil_conv_5x5", 2),
        ("sep_conv_5x5", 1),
        ("dil_conv_3x3", 3),
        ("dil_conv_5x5", 4),
        ("dil_conv_5x5", 1),
    ],
    reduce_concat=[2, 3, 4, 5],
)

#: Name -> genotype registry used by :func:`get_genotype`.
NAMED_GENOTYPES: dict[str, Genotype] = {
    "DARTS_V1": DARTS_V1,
    "DARTS_V2": DARTS_V2,
    "DARTS": DARTS_V2,
    "PRDARTS": PRDARTS,
}


def register_genotype(name: str, genotype: Genotype, *, overwrite: bool = False) -> None:
    """Add ``genotype`` to :data:`NAMED_GENOTYPES` under ``name``."""
    if not isinstance(genotype, Genotype):
        raise TypeError(f"expected a Genotype, got {type(genotype).__name__}")
    if name in NAMED_GENOTYPES and not overwrite and NAMED_GENOTYPES[name] != genotype:
        raise GenotypeError(f"genotype name {name!r} is already registered")
    NAMED_GENOTYPES[name] = genotype


def get_genotype(name_or_path: str | os.PathLike[str]) -> Genotype:
    """A registered genotype by name (e.g. ``"DARTS_V2"``) or one loaded from a JSON file.

    Raises:
      GenotypeError: if it is neither a registered name nor a readable genotype file.
    """
    key = os.fspath(name_or_path)
    if key in NAMED_GENOTYPES:
        return NAMED_GENOTYPES[key]
    if os.path.isfile(key):
        return load(key)
    names = ", ".join(sorted(NAMED_GENOTYPES))
    raise GenotypeError(f"unknown genotype {key!r}: not a registered name ({names}) nor a file")
