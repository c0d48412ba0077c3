"""Helpers shared by the command modules: config arguments and loading."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

OVERRIDE = re.compile(r"^[A-Za-z_][\w.-]*=")  # a ``key=value`` override, wherever it stands on the line


def add_config_args(parser: argparse.ArgumentParser, default_config: str | None = None) -> None:
    """Add ``--config FILE`` and trailing ``key=value`` overrides to ``parser``."""
    parser.add_argument(
        "--config",
        type=Path,
        default=default_config,
        help="YAML config file (every key is documented in configs/*.yaml)"
        + (f"; default {default_config}" if default_config else ""),
    )
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="override a config key, e.g. epochs=3 lr=1e-3 (dotted keys reach sections: train.epochs=3)",
    )


def add_hidden_alias(parser: argparse.ArgumentParser, old: str, dest: str, type: Any = None) -> None:
    """Accept ``old`` as an unlisted spelling of the option stored in ``dest`` (it keeps old command lines
    working; ``--help`` shows only the current name, whose default stays in force)."""
    parser.add_argument(old, dest=dest, type=type, default=argparse.SUPPRESS, help=argparse.SUPPRESS)


def load_stage_config(cls: type[T], args: argparse.Namespace, extra: dict[str, Any] | None = None) -> T:
    """Build config ``cls`` from ``--config``, then explicit CLI flags in ``extra``, then ``key=value``."""
    from binsight.config import load_config

    overrides = list(getattr(args, "overrides", None) or [])
    flagged = [f"{k}={v}" for k, v in (extra or {}).items() if v is not None]
    return load_config(cls, getattr(args, "config", None), flagged + overrides)
