"""``binsight data fetch``: download ABID images and metadata from S3 into ABID layout, resumably."""

from __future__ import annotations

import argparse
from pathlib import Path

from binsight.cli.common import add_config_args, load_stage_config


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number of 0 or more, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text}")
    return value


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "fetch",
        help="download ABID images and metadata from S3 (parallel, resumable)",
        description="Download bin-images/<id>.jpg and metadata/<id>.json for every id in a file list from the "
        "public Amazon Bin Image Dataset bucket (anonymously) or any S3-compatible store. Complete files are "
        "skipped, partial ones resumed; each file is validated before it counts. Writes <out>/fetch_report.json "
        "and exits 1 when any file failed (re-run the same command to resume).",
    )
    parser.add_argument("--out", type=Path, required=True, help="dataset root to write (ABID layout)")
    parser.add_argument(
        "--file-list",
        type=Path,
        required=True,
        help="Udacity file_list.json, a JSON list of ids, or a text file with one id per line (00001 or 523)",
    )
    parser.add_argument("--endpoint-url", help="S3-compatible endpoint (MinIO, moto, …); default AWS S3")
    parser.add_argument("--bucket", help="bucket name (default: aft-vbi-pds)")
    parser.add_argument("--region", help="bucket region (default: us-east-1)")
    parser.add_argument("--workers", type=_positive_int, help="parallel downloads (default: 8)")
    parser.add_argument(
        "--retries",
        type=_non_negative_int,
        help="retries per file for network errors, 5xx and throttling, with exponential backoff (default: 5)",
    )
    parser.add_argument("--limit", type=_positive_int, help="fetch only the first N ids of the list")
    parser.add_argument(
        "--timeout", type=_positive_float, help="connect/read timeout per request in seconds (default 30)"
    )
    parser.add_argument(
        "--sign-request",
        action="store_true",
        help="sign requests with your AWS credentials (env vars or profile) for a private bucket; "
        "by default requests are anonymous",
    )
    add_config_args(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from binsight.data.fetch import REPORT_NAME, FetchOptions, fetch_dataset
    from binsight.data.fetch_list import read_id_list
    from binsight.errors import DataError

    flags = {k: getattr(args, k) for k in ("bucket", "region", "endpoint_url", "workers", "retries", "timeout")}
    options = load_stage_config(FetchOptions, args, {**flags, "sign_request": args.sign_request or None})
    ids = read_id_list(args.file_list)
    if args.limit:
        ids = ids[: args.limit]
    report = fetch_dataset(ids, args.out, options)
    print(report.summary(), flush=True)
    if not report.ok:
        missing = report.failed + report.not_attempted
        raise DataError(
            f"{missing} of {report.requested} files were not fetched (details in {args.out / REPORT_NAME}); "
            "re-run the same command to resume: complete files are skipped and partial ones continued"
        )
    return 0
