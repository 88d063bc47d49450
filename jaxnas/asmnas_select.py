"""ASM-NAS's selection on a finished search (Algorithm 1, lines 6-13):

    python -m jaxnas.asmnas_select --workdir W [--mode M] [--aggregate A] [--out DIR]

Restores the last checkpoint of a search workdir written by ``jaxnas search`` with an
``asmnas`` config and runs :meth:`jaxnas.search.asmnas.ASMNAS.select` over the held-out
half of the training split.  The selection itself is the method's
(:mod:`jaxnas.search.asmnas`); reading a workdir is a run's business, so this module
sits with the runs, above the loop (the import contract in ``pyproject.toml``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

import jax

from jaxnas import data, xla
from jaxnas.config import config_from_json
from jaxnas.runtime import RunError, checkpoint_manager, restore
from jaxnas.search.asmnas import AGGREGATES, ASMNAS, SELECTIONS, Selection, save_selection
from jaxnas.search_workdir import SearchWorkdir

__all__ = ["main", "select_workdir"]


def select_workdir(
    workdir: str | os.PathLike,
    *,
    mode: str | None = None,
    aggregate: str | None = None,
    limit_batches: int = 0,
    out: str | os.PathLike | None = None,
) -> tuple[Selection, dict[str, str]]:
    """Algorithm 1's selection on the **whole held-out split** of a finished search.

    Restores the last checkpoint of ``workdir`` (written by ``jaxnas search`` with an
    ``asmnas`` config), runs :meth:`ASMNAS.select` over the held-out half of the
    training split (no augmentation, full batches, the first ``limit_batches`` if > 0)
    and writes :func:`save_selection`'s files to ``out`` (default ``workdir/selection``).
    """
    xla.prepare(search=True)
    wd = SearchWorkdir(os.fspath(workdir))
    with open(wd.config, encoding="utf-8") as f:
        config = config_from_json(f.read())
    d = config.data
    train = data.load(d.dataset, "train", data_dir=d.data_dir or None, limit=d.limit or None)
    _, valid_idx = data.bilevel_split(len(train), seed=config.seed, portion=d.portion)
    loader = data.Loader(
        train,
        valid_idx,
        d.batch_size,
        seed=0,
        shuffle=False,
        augment=data.NO_AUGMENT,
        drop_last=True,
        pad_to=d.pad_to or None,
    )
    batches = [b[0] for b in loader.epoch(0)]
    if limit_batches:
        batches = batches[:limit_batches]
    steps_per_epoch = 1  # the schedule is not used by selection
    method = ASMNAS(
        config,
        steps_per_epoch=steps_per_epoch,
        num_classes=train.num_classes,
        input_shape=tuple(batches[0].shape[1:]),
    )
    # shapes only: nothing is compiled or run to make the restore target
    template = jax.eval_shape(lambda: method.init(jax.random.PRNGKey(config.seed), batches[0]))
    mngr = checkpoint_manager(wd.checkpoints, config.run.checkpoint_keep)
    try:
        latest = mngr.latest_step()
        if latest is None:
            raise RunError(f"{wd.checkpoints} has no checkpoint to select from")
        state = restore(mngr, latest, template, wd.checkpoints)
    finally:
        mngr.close()
    selection = method.select(state, batches, mode=mode, aggregate=aggregate)
    files = save_selection(
        selection, out or os.path.join(wd.root, "selection"), method.primitives, method.reductions
    )
    return selection, files


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m jaxnas.asmnas_select --workdir W [--mode M] [--aggregate A]``."""
    import argparse

    p = argparse.ArgumentParser(description="ASM-NAS selection (Algorithm 1, lines 6-13)")
    p.add_argument("--workdir", required=True)
    p.add_argument("--mode", choices=SELECTIONS)
    p.add_argument("--aggregate", choices=AGGREGATES)
    p.add_argument("--limit-batches", type=int, default=0)
    p.add_argument("--out")
    a = p.parse_args(argv)
    selection, files = select_workdir(
        a.workdir, mode=a.mode, aggregate=a.aggregate, limit_batches=a.limit_batches, out=a.out
    )
    print(json.dumps(dict(files, examples=selection.examples, mode=selection.mode), indent=1))


if __name__ == "__main__":
    main()
