"""``binsight data split``: stratified, leak-free train/val/test manifests from a dataset."""

from __future__ import annotations

import argparse
from pathlib import Path

from binsight.cli.common import add_config_args, load_stage_config


def parse_classes(text: str) -> list[int]:
    """Parse ``1-5``, ``1,2,3`` or ``0-2,5`` into a sorted list of distinct counts."""
    out: set[int] = set()
    try:
        for part in text.split(","):
            part = part.strip()
            if "-" in part:
                lo, hi = (int(x) for x in part.split("-", 1))
                if lo > hi:
                    raise ValueError
                out.update(range(lo, hi + 1))
            elif part:
                out.add(int(part))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a class list; expected e.g. 1-5 or 1,2,3") from None
    if not out or min(out) < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a class list; expected counts >= 0, e.g. 1-5")
    return sorted(out)


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "split",
        help="split a dataset into train/val/test manifests (stratified, no leakage)",
        description="Read a dataset root (bin-images/ + metadata/) or a labels CSV, check every image, and write "
        "train.csv, val.csv, test.csv (path,label,sha256,source), split_summary.json and problems.csv. "
        "Exact duplicates (same bytes) always land in the same split.",
    )
    parser.add_argument(
        "--data", "--src", dest="src", type=Path, required=True, help="dataset root (ABID layout) or labels CSV"
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder for the manifests")
    parser.add_argument("--seed", type=int, help="random seed (default 42)")
    parser.add_argument("--val", type=float, help="validation fraction per class (default 0.1)")
    parser.add_argument("--test", type=float, help="test fraction per class (default 0.1)")
    parser.add_argument(
        "--classes", type=parse_classes, help="item counts to keep, e.g. 1-5 or 0,1,2 (default 1-5); others excluded"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace the manifests in a non-empty --out folder")
    parser.add_argument("--no-check-images", action="store_true", help="do not decode images (faster, less safe)")
    add_config_args(parser)
    parser.set_defaults(func=handler)


def handler(args: argparse.Namespace) -> int:
    from binsight.config.schemas import SplitConfig
    from binsight.data.split import format_summary, split_dataset

    extra = {"seed": args.seed, "val": args.val, "test": args.test}
    if args.classes is not None:
        extra["classes"] = "[" + ",".join(map(str, args.classes)) + "]"
    if args.no_check_images:
        extra["check_images"] = "false"
    cfg = load_stage_config(SplitConfig, args, extra)
    if args.out.is_dir() and any(args.out.iterdir()) and not args.overwrite:
        from binsight.errors import BinsightError

        raise BinsightError(f"--out {args.out} is not empty; choose a new folder, or pass --overwrite to replace it")
    summary = split_dataset(args.src, args.out, cfg)
    print(format_summary(summary))
    print(f"wrote {args.out}/train.csv, val.csv, test.csv, split_summary.json, {summary['problems']['report']}")
    return 0
