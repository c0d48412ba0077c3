"""``binsight predict``: count the items in bin photos with a trained model."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "predict",
        help="predict item counts for images or folders of images",
        description='Print one prediction JSON per image (JSON lines, each with an added "image" field), or '
        "one JSON list with --json-list. Folders are expanded to their *.jpg/*.jpeg/*.png files, sorted. "
        'An unreadable image gives an {"image", "error"} entry and exit code 1; the others are still '
        "predicted.",
    )
    parser.add_argument("--model", required=True, help="run directory or artifact folder")
    parser.add_argument("images", nargs="+", metavar="IMAGE|DIR", help="image files or folders")
    parser.add_argument(
        "--expected-quantity",
        type=int,
        default=None,
        help="the count the records expect: adds a check {expected_quantity, match, decision}",
    )
    parser.add_argument("--batch-size", type=int, default=16, help="images per forward pass (default 16)")
    parser.add_argument("--json-list", action="store_true", help="print one JSON list instead of JSON lines")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: $OMP_NUM_THREADS, else all CPUs)"
    )
    parser.add_argument("--backend", default="torch", help="inference backend (default torch)")
    parser.set_defaults(func=handler)


def expand_inputs(inputs: list[str]) -> list[Path]:
    """Files as given; folders → their image files sorted by name. Missing paths stay (reported later)."""
    paths: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            paths.extend(sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES))
        else:
            paths.append(path)
    return paths


def handler(args: argparse.Namespace) -> int:
    from binsight.errors import BinsightError, DataError
    from binsight.inference.predictor import Predictor

    if args.batch_size < 1:
        raise BinsightError("--batch-size must be >= 1")
    paths = expand_inputs(args.images)
    if not paths:
        raise BinsightError(f"no .jpg/.jpeg/.png images found in {' '.join(args.images)}")
    predictor = Predictor(args.model, backend=args.backend, threads=args.threads)
    collected: list[dict] = []
    failed = 0

    def emit(entry: dict) -> None:
        if args.json_list:
            collected.append(entry)
        else:
            print(json.dumps(entry), flush=True)

    for start in range(0, len(paths), args.batch_size):
        chunk = paths[start : start + args.batch_size]
        images, entries = [], []
        for path in chunk:
            try:
                images.append(predictor.open_image(path))
                entries.append({"image": str(path)})
            except DataError as exc:
                failed += 1
                print(f"binsight: error: {exc}", file=sys.stderr)
                entries.append({"image": str(path), "error": str(exc)})
        predictions = iter(predictor.predict_images(images, [args.expected_quantity] * len(images)))
        for entry in entries:
            emit(entry if "error" in entry else {"image": entry["image"], **next(predictions)})
    if args.json_list:
        print(json.dumps(collected, indent=2))
    if failed:
        print(f"binsight: {failed} of {len(paths)} images could not be predicted", file=sys.stderr)
        return 1
    return 0
