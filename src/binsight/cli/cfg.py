"""``binsight cfg`` and ``binsight copy-cfg``: show the configs shipped inside binsight, copy one to edit."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    show = sub.add_parser(
        "cfg",
        help="list the shipped configs, or print one",
        description="Without NAME: list the configs shipped inside binsight (usable anywhere as --config NAME). "
        "With NAME: print that config, every key commented.",
        epilog="examples:\n  binsight cfg\n  binsight cfg abid\n  binsight train --config abid --data splits/abid",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    show.add_argument("name", nargs="?", help="a shipped config name, e.g. demo, abid, tune-report")
    show.set_defaults(func=show_config)
    copy = sub.add_parser(
        "copy-cfg",
        help="copy a shipped config into a file to edit",
        description="Copy the shipped config NAME to DEST (default ./NAME.yaml); then run with --config DEST.",
        epilog="examples:\n  binsight copy-cfg abid\n  binsight copy-cfg demo my-demo.yaml && binsight pipeline "
        "--config my-demo.yaml",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    copy.add_argument("name", help="a shipped config name (see `binsight cfg`)")
    copy.add_argument("dest", nargs="?", type=Path, help="destination file or folder (default ./NAME.yaml)")
    copy.add_argument("--force", action="store_true", help="overwrite an existing destination file")
    copy.set_defaults(func=copy_config)


def show_config(args: argparse.Namespace) -> int:
    from binsight.config.shipped import shipped_names, shipped_path, summary

    if args.name:
        print(shipped_path(args.name).read_text(encoding="utf-8"), end="")
        return 0
    names = shipped_names()
    width = max(map(len, names))
    for name in names:
        print(f"{name:<{width}}  {summary(name)}")
    print("\nprint one with `binsight cfg NAME`; copy one to edit with `binsight copy-cfg NAME`")
    return 0


def copy_config(args: argparse.Namespace) -> int:
    from binsight.config.shipped import shipped_path
    from binsight.errors import BinsightError

    src = shipped_path(args.name)
    dest = args.dest or Path(src.name)
    if dest.is_dir():
        dest = dest / src.name
    if dest.exists() and not args.force:
        raise BinsightError(f"{dest} exists; pass --force to overwrite it")
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dest)
    print(f"copied {args.name} to {dest}; run with --config {dest}")
    return 0
