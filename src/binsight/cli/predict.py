"""``binsight predict``: count the items in bin photos with a trained model."""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from binsight.cli.common import OVERRIDE, add_config_args, load_stage_config
from binsight.inference.backends import backend_names
from binsight.inference.outputs import FORMATS

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "predict",
        help="predict item counts for images or folders of images",
        description='Print one prediction JSON per image (JSON lines, each with an added "image" field; or CSV, '
        "an aligned table or one JSON list with --format). Folders are expanded to their *.jpg/*.jpeg/*.png "
        "files, sorted. --save DIR also writes each photo with its predicted count drawn on it. "
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
    parser.add_argument("--batch-size", type=int, help="images per forward pass (default 16)")
    parser.add_argument(
        "--format",
        choices=FORMATS,
        help="jsonl (default: one prediction JSON per line), json (one list), csv, or table (for reading)",
    )
    parser.add_argument("--json-list", action="store_true", help=argparse.SUPPRESS)  # old spelling of --format json
    parser.add_argument("--out", type=Path, help="write the predictions to this file instead of standard output")
    parser.add_argument(
        "--save", type=Path, metavar="DIR", help="also save each photo with its predicted count and confidence drawn"
    )
    parser.add_argument("--threads", type=int, help="torch threads (default: $OMP_NUM_THREADS, else all CPUs)")
    parser.add_argument(
        "--backend",
        choices=backend_names(),
        help="inference engine (default torch; onnx/onnx-int8 need `binsight export --format onnx [--int8]`)",
    )
    add_config_args(parser)
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
    from binsight.config.schemas import PredictConfig
    from binsight.errors import BinsightError, DataError
    from binsight.inference.outputs import PredictionWriter, save_annotated
    from binsight.inference.predictor import Predictor

    # the IMAGE list also catches key=value overrides written after it: they are settings, not files
    for item in list(args.images):
        if OVERRIDE.match(item) and not Path(item).exists():
            args.images.remove(item)
            args.overrides = [*(args.overrides or []), item]
    flags = {k: getattr(args, k) for k in ("batch_size", "backend", "threads", "format", "expected_quantity")}
    cfg = load_stage_config(PredictConfig, args, {**flags, "format": "json" if args.json_list else args.format})
    paths = expand_inputs(args.images)
    if not paths:
        raise BinsightError(f"no .jpg/.jpeg/.png images found in {' '.join(args.images)}")
    predictor = Predictor(args.model, backend=cfg.backend, threads=cfg.threads or None)
    failed = 0
    with contextlib.ExitStack() as stack:
        stream = stack.enter_context(atomic_text(args.out)) if args.out else sys.stdout
        writer = PredictionWriter(stream, cfg.format)
        for start in range(0, len(paths), cfg.batch_size):
            chunk = paths[start : start + cfg.batch_size]
            images, entries = [], []
            for path in chunk:
                try:
                    images.append(predictor.open_image(path))
                    entries.append({"image": str(path)})
                except DataError as exc:
                    failed += 1
                    print(f"binsight: error: {exc}", file=sys.stderr)
                    entries.append({"image": str(path), "error": str(exc)})
            predictions = iter(predictor.predict_images(images, [cfg.expected_quantity] * len(images)))
            opened = iter(images)
            for entry in entries:
                if "error" not in entry:
                    entry = {"image": entry["image"], **next(predictions)}
                    if args.save:
                        save_annotated(next(opened), entry, args.save / (Path(entry["image"]).stem + ".jpg"))
                writer.write(entry)
        writer.close()
    if args.out:
        print(f"wrote {len(paths)} predictions to {args.out}", file=sys.stderr)
    if failed:
        print(f"binsight: {failed} of {len(paths)} images could not be predicted", file=sys.stderr)
        return 1
    return 0


@contextlib.contextmanager
def atomic_text(path: Path):
    """A text stream whose content replaces ``path`` only when the command finishes."""
    import io

    from binsight.utils.io import atomic_write_text

    buffer = io.StringIO()
    yield buffer
    atomic_write_text(path, buffer.getvalue())
