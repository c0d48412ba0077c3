"""The ``binsight`` command. Each command group lives in its own module with a ``register`` function;
nothing heavy is imported until a command runs, so ``binsight --help`` stays fast."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from binsight import __version__
from binsight.cli.common import OVERRIDE

# (module under binsight.cli, one-line help). Order is the order shown in --help.
COMMAND_MODULES = [
    "data",
    "train",
    "pretrain",
    "evaluate",
    "ensemble",
    "predict",
    "export",
    "tune",
    "serve",
    "endpoint",
    "cleanup",
    "gateway",
    "pipeline",
    "cfg",
    "cache",
    "aws",
    "audit",
    "review",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="binsight",
        description="Count the items in warehouse bin photos: data, training, tuning, distributed training, "
        "evaluation, serving and an event gateway, on one machine or many.",
        epilog="Run 'binsight COMMAND --help' for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"binsight {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log debug messages, also from libraries (anywhere on the line)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"binsight.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"binsight.cli.{name}":
                raise
            continue
        module.register(sub)
    for child in sub.choices.values():  # so that an error names the subcommand's usage, not the top level
        _remember_parser(child)
    return parser


def _remember_parser(parser: argparse.ArgumentParser) -> None:
    parser.set_defaults(_parser=parser)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _remember_parser(child)


VERBOSE = ("-v", "--verbose")


def parse_command_line(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """Parse with ``key=value`` overrides and ``-v`` accepted anywhere on the line, also after other flags."""
    cut = argv.index("--") if "--" in argv else len(argv)
    verbose = any(a in VERBOSE for a in argv[:cut])
    argv = [a for a in argv[:cut] if a not in VERBOSE] + argv[cut:]
    args, extra = parser.parse_known_args(argv)
    late = [a for a in extra if OVERRIDE.match(a)]
    unknown = [a for a in extra if not OVERRIDE.match(a)]
    if late and not hasattr(args, "overrides"):
        unknown = extra
    if unknown:
        sub = getattr(args, "_parser", parser)
        sub.error(f"unrecognized arguments: {' '.join(unknown)}")
    if late:
        args.overrides = [*(args.overrides or []), *late]
    args.verbose = verbose
    return args


def setup_logging(verbose: bool) -> None:
    """One format for every logger; binsight's own at INFO, third-party libraries at WARNING unless -v."""
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger().setLevel(logging.DEBUG if verbose else logging.WARNING)
    logging.getLogger("binsight").setLevel(logging.DEBUG if verbose else logging.INFO)
    # libraries that set their own level when imported read it from the environment
    os.environ["MLFLOW_LOGGING_LEVEL"] = "DEBUG" if verbose else "WARNING"
    # werkzeug (moto's loopback S3) raises its logger to INFO on first use unless a level is already set
    logging.getLogger("werkzeug").setLevel(logging.DEBUG if verbose else logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parse_command_line(parser, sys.argv[1:] if argv is None else list(argv))
    setup_logging(args.verbose)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from binsight.config import ConfigError
    from binsight.errors import BinsightError

    try:
        rc = args.func(args)
    except ConfigError as exc:
        print(f"binsight: config error: {exc}", file=sys.stderr)
        return 2
    except BinsightError as exc:
        print(f"binsight: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("binsight: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        os._exit(0)
    return int(rc or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
