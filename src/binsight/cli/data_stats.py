"""``binsight data stats``: class distribution, sample photos and image sizes of a dataset or split."""

from __future__ import annotations

import argparse
from pathlib import Path

from binsight.cli.common import add_config_args, load_stage_config


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "stats",
        help="plot class counts, sample photos and image sizes",
        description="Describe a dataset root, a labels CSV or a split folder: writes class_distribution.png, "
        "samples.png, image_sizes.png and stats.json into --out.",
    )
    parser.add_argument(
        "--data", "--src", dest="src", type=Path, required=True, help="dataset root, labels CSV, or split folder"
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder for the plots and stats.json")
    parser.add_argument("--seed", type=int, help="seed for picking sample photos (default 0)")
    add_config_args(parser)
    parser.set_defaults(func=handler)


def handler(args: argparse.Namespace) -> int:
    from binsight.config.schemas import StatsConfig
    from binsight.data.stats import compute_stats

    cfg = load_stage_config(StatsConfig, args, {"seed": args.seed})
    summary = compute_stats(args.src, args.out, seed=cfg.seed)
    print(f"{summary['images']} images ({summary['source_kind']}) in {summary['source']}")
    by_split = summary.get("counts_by_split")
    if by_split:
        print(f"{'class':>7} " + " ".join(f"{name:>7}" for name in by_split) + f" {'total':>7}")
        for label, total in summary["counts"].items():
            print(f"{label:>7} " + " ".join(f"{c[label]:>7}" for c in by_split.values()) + f" {total:>7}")
    else:
        print(f"{'class':>7} {'images':>7}")
        for label, total in summary["counts"].items():
            print(f"{label:>7} {total:>7}")
    sizes = summary["image_sizes"]
    if sizes["width"]:
        w, h = sizes["width"], sizes["height"]
        print(f"width {w['min']}-{w['max']} (mean {w['mean']}), height {h['min']}-{h['max']} (mean {h['mean']})")
    print(f"problems: {summary['problems']['total']} ({len(summary['corrupt'])} corrupt images)")
    for path in summary["plots"].values():
        print(f"wrote {path}")
    print(f"wrote {Path(args.out) / 'stats.json'}")
    return 0
