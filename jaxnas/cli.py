"""The ``jaxnas`` command.

    jaxnas search --config configs/darts_fmnist_tiny.py --workdir runs/demo
    jaxnas search --config configs/darts_cifar10.py --workdir runs/c10 --set search.epochs=3
    jaxnas search --config configs/darts_cifar10.py --workdir runs/c10 --resume
    jaxnas plot --workdir runs/demo
    jaxnas train --config configs/eval_fmnist_small.py --genotype runs/demo/genotype.json \
        --workdir runs/demo_train
    jaxnas eval --checkpoint runs/demo_train
    jaxnas summary --genotype DARTS_V2 --dataset cifar10
    jaxnas import-torch --genotype DARTS_V2 --checkpoint weights.pt \
        --config configs/eval_cifar10.py --workdir runs/darts_v2_authors
    jaxnas export-torch --checkpoint runs/demo_train --out demo.pt

Bad input (config keys, datasets, genotype files, workdirs, NaN losses) is
reported as one line ``jaxnas: error: ...`` on stderr with exit status 2.
Subcommands register themselves in :data:`COMMANDS`; a subcommand's help text is the
docstring of the function that runs it.  What runs a config, redraws a
workdir or evaluates a checkpoint is its kind's line in :data:`jaxnas.config.KINDS`
(looked up by the config's or the workdir's ``method``), never a method's name here.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import os
import sys
from collections.abc import Callable, Sequence

from jaxnas import xla
from jaxnas.logs import CliLogging

# the names these had here before they moved to jaxnas.xla (tests and benchmarks use them)
from jaxnas.xla import NO_TRITON_GEMM, enable_compilation_cache, search_xla_flags  # noqa: F401

__all__ = ["main", "COMMANDS"]

EXIT_ERROR = 2
EXIT_INTERRUPTED = 130


def _user_errors() -> tuple[type[BaseException], ...]:
    """Exception types whose message is the whole story (no traceback)."""
    from jaxnas.config import ConfigError
    from jaxnas.data import DatasetNotFoundError
    from jaxnas.optional import MissingExtraError
    from jaxnas.runtime import RunError
    from jaxnas.spaces import GenotypeError

    return (ConfigError, DatasetNotFoundError, GenotypeError, MissingExtraError, RunError)


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text or type(e).__name__


# --------------------------------------------------------------------------------- commands


def _kind_function(path: str) -> Callable:
    """The function ``"module:function"`` of a :class:`jaxnas.config.Kind`, imported
    now: only the command that runs it pays for its imports."""
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def _kinds_of(command: str) -> list[str]:
    """The config kinds (``method`` values) that ``jaxnas <command>`` runs."""
    from jaxnas.config import KINDS

    return [name for name, kind in KINDS.items() if kind.command == command]


def _run_kind(args: argparse.Namespace, config, command: str):
    """The :class:`jaxnas.config.Kind` of ``config`` after the checks every run command
    makes: one-line RunError unless ``jaxnas <command>`` runs that kind, or when
    ``--workdir`` holds a run of another method."""
    from jaxnas.config import COMMANDS, KINDS
    from jaxnas.runtime import RunError

    kind = KINDS[config.method]
    if kind.command != command:
        what = COMMANDS[kind.command]
        if command == "search":
            raise RunError(f"{args.config} is a {what} config: use `jaxnas {kind.command}`")
        kinds = " or ".join(repr(m) for m in _kinds_of(command))
        raise RunError(
            f"{args.config} is a {config.method!r} {what} config; `jaxnas {command}` takes a "
            f"{COMMANDS[command]} config (method {kinds})"
        )
    _check_workdir_method(args, config.method)
    return kind


def _run_config(args: argparse.Namespace):
    """The config of a long-running command (``--config`` with ``--set``), after the
    ``--workdir`` checks that need no config (:func:`_check_workdir_arg`)."""
    from jaxnas.config import load_config

    _check_workdir_arg(args)
    return load_config(args.config, args.set or ())


def _run_kwargs(args: argparse.Namespace) -> dict:
    """``resume`` and ``progress`` (a bar unless --no-progress or stderr is no TTY) of a
    run driver."""
    return dict(resume=args.resume, progress=not args.no_progress and sys.stderr.isatty())


def _cmd_search(args: argparse.Namespace) -> int:
    """Run an architecture search.

    Run an architecture search from a config file (data parallel over --devices devices:
    the config's data.batch_size is the global batch).
    """
    if args.devices is not None:
        args.set = [*(args.set or ()), f"run.devices={args.devices}"]
    config = _run_config(args)
    search = _kind_function(_run_kind(args, config, "search").run)
    _print_outputs(search(config, args.workdir, **_run_kwargs(args)))
    return 0


def _print_outputs(summary: dict) -> None:
    pictures = [p for p in summary.get("genotype_pictures") or [] if p.endswith(".png")]
    final = summary.get("final") or {}
    lines = [f"genotype:  {summary['genotype']}", f"  saved:   {summary['genotype_json']}"]
    if pictures:
        lines.append(f"  picture: {', '.join(pictures)} (and .svg)")
    if summary.get("alphas_plot"):
        lines.append(f"arch weights over epochs: {summary['alphas_plot']}")
    lines += _written(summary)
    if summary.get("tensorboard"):
        lines.append(f"           tensorboard --logdir {summary['tensorboard']}")
    accs = [
        f"{k} {final[k]:.4f}"
        for k in ("train/accuracy", "valid/accuracy", "test/accuracy")
        if k in final
    ]
    if accs:
        lines.append(f"final:     {', '.join(accs)}")
    print("\n".join(lines))


def _workdir_method(path: str) -> str | None:
    """The ``method`` of the config.json of a workdir, or of the workdir around a
    checkpoint folder ``workdir/<folder>/<step>``; None when there is none."""
    path = os.path.abspath(path)
    for root in (path, os.path.dirname(os.path.dirname(path))):
        try:
            with open(os.path.join(root, "config.json"), encoding="utf-8") as f:
                return json.load(f).get("method")
        except (OSError, ValueError, AttributeError):
            continue
    return None


def _check_workdir_arg(args: argparse.Namespace) -> None:
    """One-line RunError for a ``--workdir`` that cannot be meant: empty (it would be
    the current folder), or missing with ``--resume`` (a mistyped path must not start
    a new run)."""
    from jaxnas.runtime import RunError

    workdir = args.workdir
    if not workdir.strip():
        raise RunError("--workdir is empty; give the folder for the run's files, e.g. runs/demo")
    if args.resume and not os.path.exists(workdir):
        raise RunError(
            f"--resume: {workdir} does not exist; check the --workdir path, or leave out "
            "--resume to start a new run there"
        )


def _check_workdir_method(args: argparse.Namespace, method: str) -> None:
    """One-line RunError when ``--workdir`` holds a run of another method (its
    ``config.json``): resuming it, or starting afresh over its files, is a mistake that
    would otherwise surface only after the network was built, or not at all."""
    from jaxnas.runtime import RunError

    config_json = os.path.join(args.workdir, "config.json")
    old = _workdir_method(args.workdir) if os.path.isfile(config_json) else None
    if old is not None and old != method:
        raise RunError(
            f"{args.workdir} holds a {old!r} run ({config_json}), this config is {method!r}; "
            "use another --workdir"
        )


def _cmd_plot(args: argparse.Namespace) -> int:
    """Redraw the pictures of a search workdir.

    Redraw alphas.png, curves.png and the genotype pictures from saved files (a search
    workdir; for the recurrent space also a train_rnn workdir).
    """
    from jaxnas.config import DEFAULT_REPLOT, KINDS
    from jaxnas.runtime import RunError

    kind = KINDS.get(_workdir_method(args.workdir) or "")
    try:
        out = _kind_function(kind.replot if kind else DEFAULT_REPLOT)(args.workdir)
    except FileNotFoundError as e:  # none of the saved files is there
        raise RunError(str(e)) from e
    for what, paths in out.items():
        paths = paths if isinstance(paths, list) else [paths]
        print(f"{what}: {', '.join(os.fspath(p) for p in paths)}")
    return 0


def _add_search(sub) -> None:
    p = _add_config_command(
        sub, "search", _cmd_search, "config file (Python, defines get_config())"
    )
    p.add_argument(
        "--devices",
        type=int,
        default=None,
        metavar="N",
        help="devices to search on (the same as --set run.devices=N; 0: all; default: the "
        "config's run.devices, 1)",
    )
    _add_run_args(p, example="search.epochs=3")


def _add_command(
    sub, name: str, func: Callable[[argparse.Namespace], int]
) -> argparse.ArgumentParser:
    """The subparser ``name`` that ``func`` runs.  ``func``'s docstring is the command's
    text: its first line (lower case, no full stop) the help in ``jaxnas --help``, the
    rest the description in ``jaxnas NAME --help``."""
    first, _, rest = (inspect.getdoc(func) or "").partition("\n")
    p = sub.add_parser(
        name, help=first[:1].lower() + first[1:].removesuffix("."), description=rest.strip()
    )
    p.set_defaults(func=func)
    return p


def _add_config_command(
    sub, name: str, func: Callable, config_help: str
) -> argparse.ArgumentParser:
    """:func:`_add_command` for a long-running command, with its ``--config``; the
    caller adds its own flags, then :func:`_add_run_args`."""
    p = _add_command(sub, name, func)
    p.add_argument("--config", required=True, help=config_help)
    return p


def _add_run_args(p: argparse.ArgumentParser, example: str) -> None:
    """--workdir, --resume, --set, --no-progress: what every long-running command takes."""
    p.add_argument("--workdir", required=True, help="output folder (checkpoints, logs, plots)")
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint")
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help=f"override a config key, e.g. --set {example} (repeatable)",
    )
    p.add_argument(
        "--no-progress", action="store_true", help="no progress bars (also off when not a TTY)"
    )


def _add_plot(sub) -> None:
    p = _add_command(sub, "plot", _cmd_plot)
    p.add_argument("--workdir", required=True, help="a search workdir")


def _cmd_train(args: argparse.Namespace) -> int:
    """Retrain a genotype from scratch and evaluate it.

    Build the evaluation network of a genotype and train it from scratch (data parallel
    over all devices; orbax checkpoints every epoch and on SIGTERM/SIGINT).
    """
    config = _run_config(args)
    train = _kind_function(_run_kind(args, config, "train").run)
    s = train(config, args.workdir, genotype=args.genotype, **_run_kwargs(args))
    print(_train_report(s))
    return 0


def _train_report(s: dict) -> str:
    """The lines ``jaxnas train`` prints of a retraining summary ``s``: a language
    model's perplexities where the summary has ``test_ppl``, else a classifier's
    accuracies, parameters, multiply-adds and speed."""
    if "test_ppl" in s:  # a recurrent cell on text
        best = s["best"]
        return (
            f"network:   {s['params_M']:.3f}M parameters\n"
            f"best:      valid perplexity {best['value']:.2f} at epoch {best['epoch']}, "
            f"test perplexity {s['test_ppl'] or float('nan'):.2f}\nmetrics:   {s['metrics']}"
        )
    final, best = s.get("final") or {}, s.get("best")
    lines = [
        f"network:   {s['params_M']:.3f}M parameters (without auxiliary head), "
        f"{s['macs_M']:.1f}M multiply-adds per image",
    ]
    if "test/accuracy" in final:
        lines.append(
            f"test:      top-1 {final['test/accuracy']:.4f}, top-5 {final['test/top5']:.4f} "
            f"({int(final['test/examples'])} images, last epoch)"
        )
    if best:
        lines.append(f"best:      top-1 {best['value']:.4f} at epoch {best['epoch']}")
    if s.get("images_per_s"):
        lines.append(f"speed:     {s['images_per_s']:.0f} training images/s")
    return "\n".join(lines + _written(s))


def _written(summary: dict) -> list[str]:
    """The report lines of the files a run wrote that search and train both print: its
    curves (where it drew them) and its metrics."""
    curves = [f"curves:    {summary['curves_plot']}"] if summary.get("curves_plot") else []
    return [*curves, f"metrics:   {summary['metrics']}"]


def _add_train(sub) -> None:
    p = _add_config_command(
        sub, "train", _cmd_train, "retraining config (e.g. configs/eval_cifar10.py)"
    )
    _add_genotype_arg(p)
    _add_run_args(p, example="train.epochs=3")


def _add_genotype_arg(p: argparse.ArgumentParser) -> None:
    """--genotype: the genotype that train, summary and import-torch build."""
    p.add_argument(
        "--genotype",
        default=None,
        help="a shipped name (DARTS_V2) or a genotype JSON file (e.g. runs/x/genotype.json); "
        "default: the config's model.genotype",
    )


def _cmd_eval(args: argparse.Namespace) -> int:
    """Evaluate a retraining checkpoint on the test split.

    Test top-1/top-5, parameters, multiply-adds and images/s of a retrained network (test
    loss and perplexity for a recurrent cell, method train_rnn). CHECKPOINT is a `jaxnas
    train` workdir (its best state, else the latest) or a checkpoint folder inside one.
    """
    overrides = {}
    for item in args.set or ():
        key, _, value = item.partition("=")
        overrides[key] = value
    evaluate = _kind_function(_evaluable_kind(args.checkpoint).evaluate)
    r = evaluate(args.checkpoint, overrides=overrides, which=args.which)
    print(json.dumps(r, sort_keys=True) if args.json else _eval_report(r))
    return 0


def _evaluable_kind(checkpoint: str):
    """The :class:`jaxnas.config.Kind` of the run around ``checkpoint`` (a workdir or a
    checkpoint folder inside one) when ``jaxnas eval`` can evaluate it; else a one-line
    RunError naming what the path is."""
    from jaxnas.config import KINDS
    from jaxnas.runtime import RunError

    path, method = os.path.abspath(checkpoint), _workdir_method(checkpoint)
    kinds = [name for name, kind in KINDS.items() if kind.evaluate]
    if method is None:
        workdirs = " nor ".join(f"a {name} workdir" for name in kinds)
        raise RunError(
            f"{path} is neither {workdirs} (with config.json and checkpoints/) nor a "
            "checkpoint folder inside one (workdir/checkpoints/<step>, workdir/best/<step>)"
        )
    kind = KINDS.get(method)
    if kind is None or not kind.evaluate:
        raise RunError(
            f"{path} holds a {method!r} run; `jaxnas eval` reads a {' or '.join(kinds)} "
            "workdir or a checkpoint folder inside one"
        )
    return kind


def _eval_report(r: dict) -> str:
    """The lines ``jaxnas eval`` prints of an evaluation ``r``: a language model's
    perplexities where it has ``test/ppl``, else a classifier's accuracies, size and
    speed."""
    if "test/ppl" in r:  # a recurrent cell on text
        return (
            f"checkpoint:       {r['checkpoint']}{' (ASGD average)' if r['asgd'] else ''}\n"
            f"test perplexity:  {r['test/ppl']:.2f} (loss {r['test/loss']:.4f} per token)\n"
            f"valid perplexity: {r['valid/ppl']:.2f} (loss {r['valid/loss']:.4f} per token)\n"
            f"parameters:       {r['params_M']:.3f}M"
        )
    acc = r["test/accuracy"]
    return "\n".join(
        [
            f"checkpoint:    {r['checkpoint']}",
            f"test top-1:    {acc:.4f} (error {100 * (1 - acc):.2f}%)",
            f"test top-5:    {r['test/top5']:.4f}",
            f"test loss:     {r['test/loss']:.4f} ({int(r['examples'])} images)",
            f"parameters:    {r['params_M']:.3f}M (without the auxiliary head)",
            f"multiply-adds: {r['macs_M']:.1f}M per image",
            f"speed:         {r['images_per_s']:.0f} images/s (inference)",
        ]
    )


def _add_eval(sub) -> None:
    p = _add_command(sub, "eval", _cmd_eval)
    _add_checkpoint_args(p)
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="e.g. data.data_dir=...")
    p.add_argument("--json", action="store_true", help="print the result as one JSON line")


def _add_checkpoint_args(p: argparse.ArgumentParser) -> None:
    """--checkpoint and --which: the retraining checkpoint that eval and export-torch read."""
    p.add_argument(
        "--checkpoint", required=True, help="train workdir or workdir/checkpoints/<step>"
    )
    p.add_argument(
        "--which", choices=("best", "latest"), default="best", help="for a workdir (default best)"
    )


def _cmd_import_torch(args: argparse.Namespace) -> int:
    """Import a DARTS-family PyTorch state_dict into a retraining workdir.

    Convert the state_dict of the DARTS reference's NetworkCIFAR / NetworkImageNet (e.g.
    the authors' released weights) into a retraining workdir that `jaxnas eval`
    evaluates. The config (and --set) must describe the same network: init_channels,
    layers, auxiliary, dataset. The name mapping: jaxnas.torch_weights.
    """
    from jaxnas.config import load_config
    from jaxnas.runtime import RunError
    from jaxnas.torch_weights import import_torch

    _check_workdir_arg(args)
    config = load_config(args.config, args.set or ())
    if config.method != "train":
        raise RunError(
            f"{args.config} is a {config.method!r} config; import-torch takes a retraining "
            "config (method='train', e.g. configs/eval_cifar10.py)"
        )
    r = import_torch(args.checkpoint, config, args.workdir, genotype=args.genotype)
    print(
        f"imported:  {r['tensors']} tensors, {r['params']} parameters from {args.checkpoint}\n"
        f"workdir:   {r['workdir']} (checkpoint {r['checkpoint']})\n"
        f"evaluate:  jaxnas eval --checkpoint {args.workdir}"
    )
    return 0


def _add_import_torch(sub) -> None:
    p = _add_command(sub, "import-torch", _cmd_import_torch)
    p.add_argument("--checkpoint", required=True, help="a .pt state_dict (or .npz, same keys)")
    p.add_argument(
        "--config", required=True, help="retraining config, e.g. configs/eval_cifar10.py"
    )
    _add_genotype_arg(p)
    p.add_argument("--workdir", required=True, help="a new folder for the imported checkpoint")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key")
    p.set_defaults(resume=False)


def _cmd_export_torch(args: argparse.Namespace) -> int:
    """Write a retraining checkpoint as a DARTS-reference PyTorch state_dict.

    Write the weights of a `jaxnas train` workdir (its best state, else the latest) or of
    a checkpoint folder inside one as a state_dict that the DARTS reference's
    NetworkCIFAR / NetworkImageNet load with strict=True.
    """
    from jaxnas.torch_weights import export_torch

    r = export_torch(args.checkpoint, args.out, which=args.which)
    print(f"exported:  {r['tensors']} tensors of {r['checkpoint']}\nto:        {r['out']}")
    return 0


def _add_export_torch(sub) -> None:
    p = _add_command(sub, "export-torch", _cmd_export_torch)
    _add_checkpoint_args(p)
    p.add_argument("--out", required=True, help="output file: .pt (needs PyTorch) or .npz")


def _cmd_summary(args: argparse.Namespace) -> int:
    """Parameter count and multiply-adds of a genotype's network (no training).

    Build the evaluation network of a genotype and print its parameter count (M, without
    the auxiliary head) and multiply-adds per image, without training it. Defaults: C=36,
    20 layers for cifar10/cifar100/fashion_mnist; C=48, 14 layers for imagenet (the DARTS
    paper's settings).
    """
    import json

    from jaxnas.models.summary import format_summary, summary
    from jaxnas.runtime import RunError
    from jaxnas.spaces.darts_zoo import get_genotype

    for flag, value in (
        ("--layers", args.layers),
        ("--init-channels", args.init_channels),
        ("--num-classes", args.num_classes),
    ):
        if value is not None and value < 1:
            raise RunError(f"{flag} must be >= 1, got {value}")
    dataset, channels, layers, name = args.dataset, args.init_channels, args.layers, args.genotype
    reductions = args.reductions
    if args.config:  # the network a retraining config would train
        from jaxnas.config import load_config
        from jaxnas.runtime import RunError

        config = load_config(args.config, args.set or ())
        if config.method != "train":
            raise RunError(f"{args.config} is not a retraining config (method='train')")
        dataset = "imagenet" if config.data.dataset == "imagenet2012" else config.data.dataset
        channels = channels or config.model.init_channels
        layers = layers or config.model.layers
        name = name or config.model.genotype
        reductions = reductions or tuple(config.model.reductions) or None
    if not name:
        raise RunError("give --genotype (or --config with model.genotype)")
    genotype = get_genotype(name)
    try:
        s = summary(
            genotype,
            dataset or "cifar10",
            init_channels=channels,
            layers=layers,
            num_classes=args.num_classes,
            reductions=reductions,
        )
    except ValueError as e:  # unknown dataset, unbuildable genotype, too small an input
        print(f"jaxnas: error: {_one_line(e)}", file=sys.stderr)
        return EXIT_ERROR
    print(json.dumps(s) if args.json else format_summary(s, os.path.basename(name)))
    return 0


def _add_summary(sub) -> None:
    p = _add_command(sub, "summary", _cmd_summary)
    _add_genotype_arg(p)
    p.add_argument(
        "--config",
        default=None,
        help="a retraining config: its dataset, C, layers and genotype (flags still override)",
    )
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key")
    p.add_argument(
        "--dataset",
        default=None,
        help="cifar10 (default), cifar100, fashion_mnist, imagenet: input shape, classes, network",
    )
    p.add_argument("--init-channels", type=int, default=None, help="C (initial channels)")
    p.add_argument("--layers", type=int, default=None, help="number of cells")
    p.add_argument("--num-classes", type=int, default=None, help="default: the dataset's")
    p.add_argument(
        "--reductions",
        type=lambda t: tuple(int(r) for r in t.split(",") if r.strip()),
        default=None,
        help="0-based reduction cells, e.g. 4,9 (default: the genotype's, else DARTS')",
    )
    p.add_argument("--json", action="store_true", help="print the summary as one JSON line")


def _cmd_compress(args: argparse.Namespace) -> int:
    """Prune a network to a physically smaller one (width search, BayesNAS groups).

    Search channel / dimension scores or group priors on an ordinary network, cut it down
    to the kept channels and fine-tune it.
    """
    from jaxnas.config import KINDS, load_config
    from jaxnas.runtime import RunError

    _check_workdir_arg(args)
    # method -> its module: methods of one module are one config family
    family = {name: KINDS[name].module for name in _kinds_of("compress")}
    if args.method is not None and args.method not in family:
        import difflib

        close = difflib.get_close_matches(args.method, family, n=1)
        raise RunError(
            f"--method {args.method!r} is not a compress method"
            f"{f' (did you mean {close[0]!r}?)' if close else ''}; "
            f"choose one of {', '.join(family)}"
        )
    config = load_config(args.config, args.set or ())
    if config.method not in family:
        raise RunError(
            f"{args.config} is a {config.method!r} config; `jaxnas compress` takes a "
            f"compress config (method one of {', '.join(sorted(family))})"
        )
    if args.method and args.method != config.method:
        # --method picks a sibling method of the same config family (e.g. a width config
        # run as netslim or random); anything else is a mistake.
        if family.get(args.method) != family[config.method]:
            siblings = [m for m, mod in family.items() if mod == family[config.method]]
            raise RunError(
                f"--method {args.method} does not apply to {args.config} "
                f"(a {config.method!r} config; it takes --method {' | '.join(siblings)})"
            )
        # same family, same keys: keep every section (an override of ``method`` would
        # re-base the config on the method's defaults and drop the file's settings)
        from jaxnas.config import validate

        data = config.to_dict()
        data["method"] = args.method
        config = validate(data, source=args.config)
        config.lock()
    _check_workdir_method(args, config.method)
    compress = _kind_function(KINDS[config.method].run)
    summary = compress(config, args.workdir, **_run_kwargs(args))
    print(json.dumps(summary, indent=1, default=str))
    return 0


def _add_compress(sub) -> None:
    p = _add_config_command(sub, "compress", _cmd_compress, "compress config file")
    p.add_argument(
        "--method",
        default=None,
        help="rarts-width | netslim | random | sidt | bayes-group (default: the config's)",
    )
    _add_run_args(p, example="search.epochs=3")


def _add_latency(sub) -> None:
    def run(args: argparse.Namespace) -> int:
        """Measure the op latency table of a search config's supernet.

        Time every candidate op on every edge shape of the config's supernet on this
        machine (ms, median of --runs jitted calls) and save the JSON table that
        search.latency_table reads (RARTS latency penalty, thesis Sec. 3.1.4).
        """
        from jaxnas.latency import run_cli

        return run_cli(args)

    p = _add_command(sub, "latency", run)
    p.add_argument("--config", required=True, help="search config, e.g. configs/rarts_cifar10.py")
    p.add_argument("--out", required=True, help="where to write the table (JSON)")
    p.add_argument("--batch", type=int, default=1, help="images per timed call (default 1)")
    p.add_argument("--runs", type=int, default=50, help="timed calls per op (default 50)")
    p.add_argument("--warmup", type=int, default=5, help="untimed calls first (default 5)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key")
    p.add_argument("--no-progress", action="store_true", help="no progress line")


#: name -> function adding the subcommand's parser (sets ``func``) to the subparsers.
COMMANDS: dict[str, Callable[[argparse._SubParsersAction], None]] = {
    "search": _add_search,
    "plot": _add_plot,
    "summary": _add_summary,
    "train": _add_train,
    "eval": _add_eval,
    "latency": _add_latency,
    "compress": _add_compress,
    "import-torch": _add_import_torch,
    "export-torch": _add_export_torch,
}


class _Parser(argparse.ArgumentParser):
    """argparse with usage errors as one line, like every other error of the command
    (the usage is one ``--help`` away)."""

    def error(self, message: str):
        one = " ".join(message.split())
        self.exit(EXIT_ERROR, f"jaxnas: error: {one} (see `{self.prog} --help`)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="jaxnas", description="Differentiable neural architecture search in JAX/Flax."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in COMMANDS.values():
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``jaxnas`` command line; returns the exit status."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse's own usage errors (already printed) and --help
        return int(e.code) if isinstance(e.code, int) else EXIT_ERROR
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return EXIT_ERROR
    errors = _user_errors()
    from jaxnas.runtime import Interrupted

    # before anything starts the backend (XLA reads XLA_FLAGS then); the run drivers
    # call it again, for their callers from Python
    xla.prepare(search=args.command == "search")
    try:
        with CliLogging(args.verbose):
            return args.func(args)
    except errors as e:
        print(f"jaxnas: error: {_one_line(e)}", file=sys.stderr)
        return EXIT_ERROR
    except Interrupted as e:  # SIGTERM/SIGINT stopped a run after its checkpoint
        print(f"jaxnas: {_one_line(e)}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        print("jaxnas: interrupted; continue with --resume", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
