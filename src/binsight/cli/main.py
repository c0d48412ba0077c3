"""The ``binsight`` command. Each command group lives in its own module with a ``register`` function;
nothing heavy is imported until a command runs, so ``binsight --help`` stays fast."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from binsight import __version__

# (module under binsight.cli, one-line help). Order is the order shown in --help.
COMMAND_MODULES = [
    "data",
    "train",
    "evaluate",
    "predict",
    "export",
    "tune",
    "serve",
    "endpoint",
    "cleanup",
    "gateway",
    "pipeline",
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
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"binsight.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"binsight.cli.{name}":
                raise
            continue
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
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
