"""``binsight export``: ONNX (float32 / static int8) and SageMaker ``model.tar.gz`` from a trained run."""

from __future__ import annotations

import argparse
import sys

from binsight.cli.common import add_config_args, load_stage_config


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "export",
        help="export a run's model to ONNX (optionally int8) or a SageMaker model.tar.gz",
        description="--format onnx writes artifact/model.onnx (dynamic batch axis, raw head outputs) and, with "
        "--int8, artifact/model.int8.onnx (static QDQ quantization calibrated on validation images of the "
        "run's split). It then compares the backends on the test split (accuracy, macro-F1, images/s) and "
        "writes the table to RUN/export.json. --format sagemaker writes RUN/model.tar.gz holding the "
        "artifact files, which SageMaker hosting (and `binsight serve`) unpacks into its model directory.",
    )
    parser.add_argument("--model", "--run", dest="run", required=True, help="run directory or artifact folder")
    parser.add_argument("--format", choices=["onnx", "sagemaker"], help="what to write (default onnx)")
    parser.add_argument("--int8", action="store_true", help="also write a statically quantized model.int8.onnx")
    parser.add_argument("--data", default=None, help="split folder (default: the data: entry of RUN/config.yaml)")
    parser.add_argument("--calib-size", type=int, help="validation images used to calibrate (128)")
    parser.add_argument("--eval-limit", type=int, help="test images to compare on (default 0 = all)")
    parser.add_argument("--no-compare", action="store_true", help="skip the test-split comparison")
    parser.add_argument("--opset", type=int, help="ONNX opset (default 17)")
    parser.add_argument("--threads", type=int, help="threads for the comparison (default: all)")
    parser.add_argument("--out", default=None, help="output file (default: inside the run / artifact)")
    add_config_args(parser)
    parser.set_defaults(func=handler)


def _sagemaker(args: argparse.Namespace) -> int:
    import tarfile

    from binsight.inference.export import export_sagemaker

    path = export_sagemaker(args.run, args.out)
    with tarfile.open(path) as tar:
        names = tar.getnames()
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB): {', '.join(names)}")
    return 0


def handler(args: argparse.Namespace) -> int:
    from binsight.config.schemas import ExportConfig
    from binsight.errors import BinsightError

    flags = {k: getattr(args, k) for k in ("format", "data", "calib_size", "eval_limit", "opset", "threads")}
    cfg = load_stage_config(
        ExportConfig, args, {**flags, "int8": args.int8 or None, "compare": False if args.no_compare else None}
    )
    if cfg.format == "sagemaker":
        return _sagemaker(args)

    from binsight.data.manifest import read_manifest
    from binsight.evaluation.evaluate import split_dir_of
    from binsight.inference.artifact import run_dir_of
    from binsight.inference.export import (
        compare_backends,
        export_onnx,
        format_table,
        preprocess_rows,
        quantize_int8,
    )
    from binsight.inference.predictor import Predictor
    from binsight.utils.io import atomic_write_json

    run_dir, artifact = run_dir_of(args.run)
    split_dir = None
    try:
        split_dir = split_dir_of(run_dir, cfg.data or None)
        if not (split_dir / "val.csv").is_file() or not (split_dir / "test.csv").is_file():
            raise BinsightError(f"{split_dir} lacks val.csv/test.csv; pass --data SPLITDIR from `binsight data split`")
    except BinsightError as exc:
        if cfg.int8:  # checked before the export, so a missing split costs nothing
            raise BinsightError(f"--int8 needs validation images to calibrate on: {exc}") from None
        print(f"binsight: note: no split to compare on ({exc})", file=sys.stderr)
        split_dir = None
    onnx_path = export_onnx(artifact, opset=cfg.opset, out=args.out)
    print(f"wrote {onnx_path}")
    reference = Predictor(artifact, backend="torch", threads=cfg.threads or None)
    backends = ["torch", "onnx"]
    if cfg.int8:
        val_rows = read_manifest(split_dir / "val.csv")
        calibration, _ = preprocess_rows(reference, val_rows, cfg.calib_size, desc="calibration")
        int8_path = quantize_int8(artifact, calibration)
        print(f"wrote {int8_path} (calibrated on {len(calibration)} validation images)")
        backends.append("onnx-int8")
    if not cfg.compare or split_dir is None:
        return 0
    test_rows = read_manifest(split_dir / "test.csv")
    arrays, labels = preprocess_rows(reference, test_rows, cfg.eval_limit, desc="test images")
    rows = compare_backends(artifact, arrays, labels, backends, threads=cfg.threads or None)
    print(format_table(rows))
    report = {"split": str(split_dir), "n_test": len(labels), "opset": cfg.opset, "backends": rows}
    atomic_write_json(run_dir / "export.json", report)
    print(f"wrote {run_dir / 'export.json'}")
    return 0
