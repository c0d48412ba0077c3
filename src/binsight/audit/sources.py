"""What an audit reads: bins (a photo and its recorded count) from a folder in ABID layout, a labels or split
manifest CSV, an S3 prefix, or a ``serve --capture`` folder.

A source is a list of :class:`BinRef`; nothing is read until :meth:`BinRef.load` runs in the audit's thread
pool. Bins whose record is missing or broken stay in the list (the photo is still scored and a person can
count it); photos that are missing are loaded as ``None`` and reported as unreadable.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from binsight.data.abid import IMAGE_SUFFIXES, is_image, parse_metadata, read_dataset
from binsight.errors import DataError

# A record problem of the ABID reader that leaves the photo usable: the bin is audited without a record.
_RECORD_PROBLEMS = {"missing_metadata", "unreadable_metadata", "inconsistent_metadata", "bad_label"}


@dataclass
class Loaded:
    """A bin's photo bytes (None when unreadable, with ``error``) and its record once read."""

    data: bytes | None
    expected: int | None
    no_record_reason: str = ""
    error: str = ""


@dataclass
class BinRef:
    """One bin of a source.

    Attributes:
        bin_id: Stable id of the bin in its source.
        location: Path or URI of the photo.
        expected: The recorded count (None: none, or read lazily by ``loader``).
        no_record_reason: Why there is no usable record.
        photo: A local file of the photo, when there is one (reports and the review app show it).
        loader: Reads the photo (and, for S3, the record); default reads ``location`` from disk.
        truth: The true count when the record was corrupted on purpose (``--simulate-errors``).
        error: Set when there is no photo to load (a record without an image).
    """

    bin_id: str
    location: str
    expected: int | None = None
    no_record_reason: str = ""
    photo: str | None = None
    loader: Callable[[BinRef], Loaded] | None = field(default=None, repr=False)
    truth: int | None = None
    error: str = ""

    def load(self) -> Loaded:
        """Read the photo (never raises: a failure becomes ``Loaded.error``)."""
        if self.error:
            return Loaded(None, self.expected, self.no_record_reason, self.error)
        if self.loader is not None:
            try:
                return self.loader(self)
            except Exception as exc:  # any failure of one bin is that bin's problem, not the audit's
                return Loaded(None, self.expected, self.no_record_reason, f"{type(exc).__name__}: {exc}")
        try:
            return Loaded(Path(self.location).read_bytes(), self.expected, self.no_record_reason)
        except OSError as exc:
            return Loaded(None, self.expected, self.no_record_reason, f"cannot read {self.location}: {exc.strerror}")


def open_source(src: str, *, out: Path | None = None, endpoint_url: str | None = None) -> list[BinRef]:
    """The bins of ``src``: an ``s3://bucket/prefix``, a folder in ABID layout, a labels CSV
    (``file,expected_quantity``) or a split manifest (``path,label,sha256,source``).

    Raises:
        DataError: ``src`` is none of these.
    """
    if src.startswith("s3://"):
        return s3_source(src, cache=(out or Path(".")) / "s3-records", endpoint_url=endpoint_url)
    path = Path(src).expanduser()
    if path.is_file() and _is_manifest(path):
        return manifest_source(path)
    return dataset_source(path)


def _is_manifest(path: Path) -> bool:
    with path.open(encoding="utf-8-sig", errors="replace") as f:
        header = f.readline().strip().split(",")
    return header[:2] == ["path", "label"]


def manifest_source(path: Path) -> list[BinRef]:
    """A split manifest written by ``binsight data split`` (the label is the record)."""
    from binsight.data.manifest import read_manifest

    return [
        BinRef(bin_id=row.path.name, location=str(row.path), expected=row.label, photo=str(row.path))
        for row in read_manifest(path)
    ]


def dataset_source(path: Path) -> list[BinRef]:
    """A folder in ABID layout or a labels CSV, read by the ABID reader without decoding the photos (the audit
    decodes each once). Record problems keep the bin (no record); a record without a photo becomes an
    unreadable bin."""
    scan = read_dataset(path, check_images=False, show_progress=False)
    refs = [
        BinRef(bin_id=r.id, location=str(r.image_path), expected=r.expected_quantity, photo=str(r.image_path))
        for r in scan.records
    ]
    images = {}
    if scan.kind == "abid":
        images = {p.stem: p for p in (Path(scan.src) / "bin-images").iterdir() if is_image(p)}
    for problem in scan.skipped:
        where = Path(problem.path)
        image = where if is_image(where) else images.get(where.stem)
        reason = f"{problem.kind.replace('_', ' ')}: {problem.detail}"
        if problem.kind in _RECORD_PROBLEMS and image is not None and image.is_file():
            refs.append(
                BinRef(image.stem if scan.kind == "abid" else str(image), str(image), None, reason, photo=str(image))
            )
        else:  # no photo at all (a record without an image)
            refs.append(BinRef(where.stem, str(where), None, reason, error=reason))
    refs.sort(key=lambda r: r.location)
    return refs


def s3_source(uri: str, cache: Path, endpoint_url: str | None = None) -> list[BinRef]:
    """The bins under ``s3://bucket/prefix``: ``prefix/bin-images/*.jpg`` with ``prefix/metadata/<id>.json``
    (ABID's bucket layout), or images directly under the prefix with ``<id>.json`` beside them.

    Photos and records are downloaded lazily by the audit's threads; each record is kept in ``cache`` (the
    snapshot of the record that was checked) and parsed by the ABID reader.
    """
    from binsight.gateway.aws import client

    rest = uri[len("s3://") :]
    bucket, _, prefix = rest.partition("/")
    if not bucket:
        raise DataError(f"{uri} is not an S3 prefix; expected s3://BUCKET/PREFIX")
    s3 = client("s3", endpoint_url=endpoint_url, region=None, timeout=30.0, retries=5)
    prefix = prefix.rstrip("/") + "/" if prefix else ""
    keys: list[str] = []
    try:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            keys.extend(obj["Key"] for obj in page.get("Contents", []))
    except Exception as exc:  # botocore raises many types: no bucket, no credentials, unreachable
        raise DataError(f"cannot list {uri}: {exc}") from None
    keyset = set(keys)
    layout = any(k.startswith(prefix + "bin-images/") for k in keys)
    images = [
        k for k in keys if k.lower().endswith(IMAGE_SUFFIXES) and (not layout or k.startswith(prefix + "bin-images/"))
    ]
    if not images:
        raise DataError(f"no images under {uri} (expected {uri.rstrip('/')}/bin-images/*.jpg or images there)")
    cache.mkdir(parents=True, exist_ok=True)

    def meta_key(key: str) -> str:
        stem = Path(key).stem
        return f"{prefix}metadata/{stem}.json" if layout else str(Path(key).with_suffix(".json"))

    def load(ref: BinRef) -> Loaded:
        key = ref.location[len(f"s3://{bucket}/") :]
        data = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        mkey = meta_key(key)
        if mkey not in keyset:
            return Loaded(data, None, f"missing metadata: no s3://{bucket}/{mkey}")
        local = cache / f"{Path(key).stem}.json"
        local.write_bytes(s3.get_object(Bucket=bucket, Key=mkey)["Body"].read())
        meta, problem = parse_metadata(local)
        if problem or meta is None:
            detail = f"{problem.kind.replace('_', ' ')}: {problem.detail}" if problem else "unreadable metadata"
            return Loaded(data, None, detail)
        return Loaded(data, meta["expected_quantity"])

    return [BinRef(bin_id=Path(k).stem, location=f"s3://{bucket}/{k}", loader=load) for k in sorted(images)]


def capture_source(folder: Path) -> list[BinRef]:
    """The requests recorded by ``binsight serve --capture DIR``: each captured photo with the expected
    quantity its request carried (none: audited without a record)."""
    from binsight.audit.capture import read_capture

    refs = []
    for entry in read_capture(folder):
        photo = entry["photo_path"]
        expected = entry.get("expected_quantity")
        reason = "" if expected is not None else "the request carried no expected_quantity"
        refs.append(BinRef(bin_id=entry["id"], location=photo, expected=expected, no_record_reason=reason, photo=photo))
    return refs
