"""``binsight ensemble``: several trained runs behind one artifact whose raw outputs the Predictor averages."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "ensemble",
        help="combine trained runs (e.g. the k models of a cross-validation) into one ensemble artifact",
        description="Copy two or more runs' artifacts into OUT/members/<i> and write OUT/model.json. predict, "
        "evaluate, serve, endpoints and the gateway then use OUT like one model: "
        "the Predictor runs every member on the same preprocessed image and averages their raw outputs, "
        "then applies the ensemble's temperature and decision offsets. These start as the means of the "
        "members' own, each fitted on the member's val, which is the leak-free choice for the k models of a "
        "cross-validation. Refit them with `binsight evaluate --model OUT --data SPLIT` only on a val split "
        "that no member trained on; otherwise evaluate with --no-calibrate.",
    )
    parser.add_argument("runs", nargs="+", metavar="RUN", help="run directories or artifact folders (two or more)")
    parser.add_argument("--out", required=True, help="the ensemble folder to create (must not hold an artifact)")
    parser.add_argument("--name", default="", help="the ensemble's name (default: OUT's folder name)")
    tta = parser.add_mutually_exclusive_group()
    tta.add_argument("--tta", dest="tta", action="store_true", default=None, help="also average mirrored images")
    tta.add_argument("--no-tta", dest="tta", action="store_false", help="no flip averaging")
    parser.set_defaults(func=handler)


def handler(args: argparse.Namespace) -> int:
    from binsight.inference.artifact import read_meta
    from binsight.inference.ensemble import write_ensemble

    out = write_ensemble(args.runs, args.out, name=args.name, tta_flip=args.tta)
    meta = read_meta(out)
    offsets = ", ".join(f"{b:+.2f}" for b in meta.class_bias) if meta.class_bias else "none"
    print(
        f"wrote {out}: {len(meta.members)} members, head {meta.head}, flip TTA {'on' if meta.tta_flip else 'off'}, "
        f"temperature {meta.temperature:.3f}, decision offsets {offsets}"
    )
    print(f"next: binsight evaluate --model {out} --data SPLIT --no-calibrate   (or binsight serve --model {out})")
    return 0
