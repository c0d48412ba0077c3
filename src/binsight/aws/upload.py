"""``binsight aws upload``: a local split folder as the ``train`` channel of a training job.

Layout on S3 (``s3://bucket/prefix/deployment/data/<split name>/``): ``train.csv``, ``val.csv``,
``test.csv`` with image paths ``images/<sha256><ext>`` relative to them, and the images, content-addressed
(so duplicates upload once and a re-run uploads only what is missing). The container side reads this as a
whole split folder (:func:`binsight.training.sagemaker.prepare_split`, layout 1). Uploads use boto3's
managed transfer (multipart, retries) from a few threads.
"""

from __future__ import annotations

import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from binsight.aws.api import Api
from binsight.aws.session import Target
from binsight.aws.training import record_prefix
from binsight.utils.progress import progress

SPLIT_FILES = ("train.csv", "val.csv", "test.csv")


def upload_split(api: Api, target: Target, split_dir: Path, name: str, threads: int = 8) -> str:
    """Upload ``split_dir``; returns the channel's S3 URI."""
    from binsight.data.manifest import ManifestRow, is_split_dir, read_manifest, write_manifest
    from binsight.errors import DataError

    if not is_split_dir(split_dir) or not all((split_dir / f).is_file() for f in SPLIT_FILES):
        raise DataError(f"{split_dir} is not a split folder with {', '.join(SPLIT_FILES)} (run `binsight data split`)")
    base = target.key("data", name)
    images: dict[str, Path] = {}
    with tempfile.TemporaryDirectory(prefix="binsight-aws-") as tmp:
        stage = Path(tmp)
        for fname in SPLIT_FILES:
            rows = []
            for row in read_manifest(split_dir / fname):
                stored = f"{row.sha256}{row.path.suffix.lower()}"
                images[stored] = row.path
                rows.append(ManifestRow(stage / "images" / stored, row.label, row.sha256, row.source))
            write_manifest(stage / fname, rows)
        record_prefix(api, target)
        existing = set() if api.dry_run else _existing_keys(api, target.bucket, f"{base}/images/")
        todo = [(path, f"{base}/images/{stored}") for stored, path in sorted(images.items())]
        todo = [(path, key) for path, key in todo if key not in existing]
        todo += [(stage / fname, f"{base}/{fname}") for fname in SPLIT_FILES]
        if api.dry_run:
            for path, key in todo:
                api.call("s3", "upload_file", Filename=str(path), Bucket=target.bucket, Key=key)
        else:
            client = api.client("s3")
            bar = progress(total=len(todo), desc="upload", unit="file")
            with ThreadPoolExecutor(threads) as pool:
                for _ in pool.map(lambda item: client.upload_file(str(item[0]), target.bucket, item[1]), todo):
                    bar.update(1)
            bar.close()
    return f"s3://{target.bucket}/{base}/"


def _existing_keys(api: Api, bucket: str, prefix: str) -> set[str]:
    keys: set[str] = set()
    token = None
    while True:
        params = {"Bucket": bucket, "Prefix": prefix}
        if token:
            params["ContinuationToken"] = token
        page = api.call("s3", "list_objects_v2", **params)
        keys.update(o["Key"] for o in page.get("Contents", []))
        token = page.get("NextContinuationToken")
        if not token:
            return keys
