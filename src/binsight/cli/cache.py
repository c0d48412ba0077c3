"""``binsight cache info|clear``: what the decode and feature caches hold, and freeing the space."""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "cache",
        help="show or clear the decode/feature caches",
        description="Training decodes each split once into a uint8 memmap (N x size x size x 3 bytes: 3,802 "
        "photos at 224 px take 572 MB) and caches frozen-backbone features (N x feature size x 4 bytes, a few "
        "MB), and keeps the SynthBins starts that synth_pretrain builds (about 14 MB each; rebuilding one "
        "takes about 7-11 CPU minutes). Entries are reused by every run, trial and worker on the same split and "
        "preprocessing. They live "
        "under $BINSIGHT_CACHE_DIR, else ~/.cache/binsight/decode, and can be deleted at any time: the next run "
        "rebuilds what it needs.",
    )
    actions = parser.add_subparsers(dest="cache_command", metavar="ACTION", required=True)
    info = actions.add_parser("info", help="list the cache entries with their sizes", description="List entries.")
    clear = actions.add_parser("clear", help="delete cache entries", description="Delete cache entries.")
    for p in (info, clear):
        p.add_argument("--cache-dir", type=Path, default=None, help="cache root (default as described above)")
        p.add_argument(
            "--kind",
            choices=["images", "features", "pretrain"],
            help="only decode (images), feature, or SynthBins pre-training (pretrain) entries",
        )
    clear.add_argument("--older-than", type=float, metavar="DAYS", help="only entries unused for DAYS days")
    info.set_defaults(func=show)
    clear.set_defaults(func=clear_entries)


def _select(args: argparse.Namespace):
    from binsight.data.cache import cache_usage

    entries = [e for e in cache_usage(args.cache_dir or "") if args.kind in (None, e.kind)]
    older = getattr(args, "older_than", None)
    if older is not None:
        entries = [e for e in entries if time.time() - e.last_used > older * 86400]
    return entries


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def show(args: argparse.Namespace) -> int:
    from binsight.data.cache import cache_root

    entries = _select(args)
    print(f"cache root: {cache_root(args.cache_dir or '')}")
    for e in entries:
        used = time.strftime("%Y-%m-%d %H:%M", time.localtime(e.last_used))
        print(f"{e.kind:<9} {_size(e.bytes):>9}  {used}  {e.path.name}  {e.detail}")
    print(f"{len(entries)} entries, {_size(sum(e.bytes for e in entries))} in all")
    return 0


def clear_entries(args: argparse.Namespace) -> int:
    from binsight.data.cache import clear_cache

    entries = _select(args)
    freed = clear_cache(entries)
    print(f"removed {len(entries)} entries, freed {_size(freed)}")
    return 0
