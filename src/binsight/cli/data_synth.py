"""``binsight data synth``: generate SynthBins, realistic synthetic bin photos in ABID layout."""

from __future__ import annotations

import argparse
from pathlib import Path

from binsight.cli.common import add_config_args, load_stage_config

EPILOG = """examples:
  binsight data synth --out data/synth --n 1000
  binsight data synth --out data/synth-0to8 --n 5000 --counts 0-8 --mix uniform --seed 7
  binsight data synth --out data/small --n 200 --counts 1,3,5 width_min=128 width_max=160 straps_max=1

Writes <out>/bin-images/<id>.jpg, <out>/metadata/<id>.json (the public ABID metadata format) and
<out>/synth.json. The same config and seed always give byte-identical files, whatever --workers is.
Config keys (key=value or --config FILE): n, seed, counts, mix, width_min, width_max, aspect_min, aspect_max,
jpeg_quality_min, jpeg_quality_max, straps_max, min_visible, workers."""


def _counts_arg(text: str) -> list[int]:
    from binsight.data.synth.plan import parse_counts

    try:
        return parse_counts(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "synth",
        help="generate SynthBins: synthetic bin photos with exact counts, in ABID layout",
        description="Generate SynthBins: procedurally drawn warehouse-bin photos (bin walls, straps, boxes, "
        "bags, bottles and books, with occlusion, lighting, blur, noise and JPEG artefacts) with exact item "
        "counts, in the layout of the Amazon Bin Image Dataset.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", type=Path, required=True, help="dataset folder to create (must be empty or new)")
    parser.add_argument("--n", type=int, help="number of images (default 1000)")
    parser.add_argument("--seed", type=int, help="random seed; the same seed gives the same bytes (default 0)")
    parser.add_argument(
        "--counts",
        type=_counts_arg,
        metavar="SPEC",
        help="item counts to draw: a range 1-5 (default), 0-8, or a list 1,3,5; 0 draws empty bins",
    )
    parser.add_argument(
        "--mix",
        choices=["udacity", "uniform"],
        help="class mix: udacity = the capstone report's 10,441-image subset proportions (default); "
        "uniform = equal shares",
    )
    parser.add_argument("--workers", type=int, help="processes; 0 = one per core (default), 1 = no pool")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace a previous dataset in a non-empty --out folder"
    )
    add_config_args(parser)
    parser.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    from binsight.config.schemas import SynthConfig
    from binsight.data.synth import generate

    extra = {"n": args.n, "seed": args.seed, "mix": args.mix, "workers": args.workers}
    if args.counts is not None:
        extra["counts"] = "[" + ", ".join(map(str, args.counts)) + "]"
    cfg = load_stage_config(SynthConfig, args, extra)
    summary = generate(args.out, cfg, show_progress=True, overwrite=args.overwrite)
    per_class = ", ".join(f"{c}: {k}" for c, k in summary["class_counts"].items())
    print(
        f"wrote {summary['n']} images to {summary['out']} in {summary['seconds']:.1f} s "
        f"({summary['images_per_s']:.0f} images/s, {summary['workers']} workers)\n"
        f"images per count: {per_class}"
    )
    return 0
