"""The ``minicnn`` command: train | ablate | plot | show | summary | data fetch.

Exit status: 0 done; 2 bad input or a state the user must change (config,
arguments, data, a folder in use or holding another run, a corrupt
checkpoint, a full disk); 128 + N when stopped by signal N (Ctrl-C: 130,
SIGTERM: 143, SIGHUP: 129), after saving what can be resumed and saying how;
1 anything else, among it a study some of whose runs failed (a table says
which and why; ``--verbose`` adds their tracebacks).
"""
from __future__ import annotations

import argparse
import datetime
import os
import pathlib
import signal
import sys


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse's own exit status is already 2; keep one format
        self.print_usage(sys.stderr)
        print(f"minicnn: error: {message}", file=sys.stderr)
        sys.exit(2)


def _add_set(parser, help_text: str) -> None:
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help=help_text)


def _add_data_dir(parser) -> None:
    parser.add_argument("--data-dir", help="folder with the four IDX files of data.dataset (mnist, fashion_mnist)")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="minicnn", description="Small, fast CNN training for pooling studies on MNIST.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    t = sub.add_parser("train", help="train one config and write its run folder")
    t.add_argument("config", help="YAML config, e.g. configs/max_pool.yaml")
    _add_set(t, "override a config key by its dotted path, e.g. train.epochs=1")
    t.add_argument("--out", help="run folder (default runs/NAME-DATE-TIME)")
    _add_data_dir(t)
    t.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")

    a = sub.add_parser("ablate", help="run an experiment grid (configs x seeds)")
    a.add_argument("experiment", help="experiment YAML, e.g. experiments/pooling_ablation.yaml")
    where = a.add_mutually_exclusive_group()
    where.add_argument("--jobs", type=int, default=1, help="runs in parallel on this machine (default 1)")
    where.add_argument("--dask", metavar="ADDRESS",
                       help="run on a Dask cluster: a scheduler address (tcp://host:8786), or local:N "
                            "for N worker processes here; needs pip install \"minicnn[dask]\"")
    a.add_argument("--resume", action="store_true", help="skip finished runs, continue interrupted ones")
    a.add_argument("--quick", action="store_true", help="smoke test: 1 epoch, 2,000 training images, 1 seed")
    _add_set(a, "override a config key in every run")
    a.add_argument("--out", help="experiment folder (default: the experiment's `out`)")
    _add_data_dir(a)
    a.add_argument("--verbose", action="store_true", help="print the tracebacks of failed runs")

    pl = sub.add_parser("plot", help="draw the figures of a run or experiment folder")
    pl.add_argument("folder")

    sh = sub.add_parser("show", help="draw feature maps and max-pooling switches of a run or study's networks")
    sh.add_argument("folder", help="a run folder, or an experiment folder (one row per variant)")
    sh.add_argument("--images", type=int, default=4, help="test images to draw (default 4)")
    _add_data_dir(sh)

    s = sub.add_parser("summary", help="print the model table of a config")
    s.add_argument("config")
    _add_set(s, "override a config key by its dotted path")

    d = sub.add_parser("data", help="manage the data set cache")
    d.add_argument("action", choices=["fetch"], help="fetch: download, verify and cache a data set")
    d.add_argument("--dataset", choices=["mnist", "fashion_mnist"], default="mnist",
                   help="the data set to fetch (default mnist)")
    d.add_argument("--data-dir", help="folder with the four IDX files")
    return p


def _train(args) -> None:
    from minicnn.config import check_memory, load_config
    from minicnn.train import fit_config

    config = load_config(args.config, args.set)
    check_memory(config)
    if args.resume and not args.out:
        raise_user("--resume needs --out, the run folder to continue")
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = pathlib.Path(args.out or f"runs/{config.name}-{stamp}")
    print(f"run folder: {out}", file=sys.stderr)
    try:
        summary = fit_config(config, out, data_dir=args.data_dir, resume=args.resume)
    except KeyboardInterrupt as e:
        print(f"\n{_stopped(e)}; the last finished epoch is saved in {out}. Continue with:\n"
              f"  minicnn train {args.config} --out {out} --resume"
              + "".join(f" --set {s}" for s in args.set), file=sys.stderr)
        sys.exit(_status(e))
    verdict = "DIVERGED" if summary["diverged"] else "done"
    print(f"{verdict}: test accuracy {100 * summary['test_accuracy']:.2f}% after {summary['epochs']} epochs, "
          f"{summary['images_per_second']:.0f} images/s; {out}/summary.json")


def _ablate(args) -> None:
    from minicnn.study.experiment import RunsFailed, run_experiment, run_study

    if args.jobs < 1:
        raise_user(f"--jobs must be at least 1, got {args.jobs}")
    try:
        if args.dask is not None:
            run_study(args.dask, args.experiment, resume=args.resume, quick=args.quick, overrides=args.set,
                      out=args.out, data_dir=args.data_dir)
        else:
            run_experiment(args.experiment, jobs=args.jobs, resume=args.resume, quick=args.quick,
                           overrides=args.set, out=args.out, data_dir=args.data_dir)
    except KeyboardInterrupt as e:  # run_experiment has said how to resume
        print(_stopped(e), file=sys.stderr)
        sys.exit(_status(e))
    except RunsFailed as e:
        if args.verbose:
            print(e.tracebacks(), file=sys.stderr)
        print(f"minicnn: error: {e.table()}" + ("" if args.verbose else "\n(--verbose shows the tracebacks)"),
              file=sys.stderr)
        sys.exit(1)


def _plot(args) -> None:
    from minicnn.study.claims import draw_folder

    for path in draw_folder(args.folder):
        print(path)


def _show(args) -> None:
    from minicnn.featuremaps import show

    for path in show(args.folder, images=args.images, data_dir=args.data_dir):
        print(path)


def _summary(args) -> None:
    from minicnn.config import build_model, load_config, memory_summary

    config = load_config(args.config, args.set)
    print(f"{config.name} ({config.file})")
    print(build_model(config, allocate=False).summary())  # no weights: any size prints
    print(memory_summary(config))


def _data(args) -> None:
    from minicnn.data import fetch

    print(fetch(args.data_dir, dataset=args.dataset))


def raise_user(message: str):
    from minicnn.errors import UserError

    raise UserError(message)


class Stopped(KeyboardInterrupt):
    """Raised in the main thread by SIGTERM or SIGHUP, so that they stop a run as Ctrl-C does."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _stop(signum, frame):
    # once: a second signal must not break the clean-up the first one started
    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, signal.SIG_IGN)
    raise Stopped(signum)


def _stopped(e: KeyboardInterrupt) -> str:
    return f"stopped by {signal.Signals(e.signum).name}" if isinstance(e, Stopped) else "interrupted"


def _status(e: KeyboardInterrupt) -> int:
    return 128 + (e.signum if isinstance(e, Stopped) else signal.SIGINT)


COMMANDS = {"train": _train, "ablate": _ablate, "plot": _plot, "show": _show, "summary": _summary, "data": _data}


def main(argv=None) -> int:
    # A shell starts background jobs with SIGINT ignored; restore Ctrl-C -> KeyboardInterrupt.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, _stop)
    args = _parser().parse_args(argv)
    from minicnn import isa
    from minicnn.errors import UserError  # ConfigError and DataError included

    try:
        from minicnn.threads import check_environment

        check_environment()
        isa.level()  # MINICNN_ISA: an unknown level, or one this CPU cannot run, stops every command here
        COMMANDS[args.command](args)
    except UserError as e:
        print(f"minicnn: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        print(f"\n{_stopped(e)}", file=sys.stderr)
        return _status(e)
    except BrokenPipeError:  # e.g. `minicnn ... | head`: the reader left, not our failure
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
