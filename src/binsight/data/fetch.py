"""Download ABID images and metadata from S3: the public bucket ``aft-vbi-pds`` or any S3-compatible store.

Each object is streamed into ``<file>.part``, resumed with a Range GET when a ``.part`` is already there, validated
(metadata parses as a JSON object, the JPEG decodes) and only then renamed into place. The dataset folder therefore
only ever holds complete, valid files, and an interrupted run picks up where it stopped.

Library use::

    from binsight.data.fetch import FetchOptions, fetch_dataset
    from binsight.data.fetch_list import read_id_list

    report = fetch_dataset(read_id_list("file_list.json"), "data/abid", FetchOptions(workers=8))
"""

from __future__ import annotations

import json
import logging
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from binsight.data.fetch_list import object_keys
from binsight.data.fetch_object import FileResult, fetch_one, probe_endpoint
from binsight.errors import BinsightError, Interrupted
from binsight.faults import Faults
from binsight.utils.io import atomic_write_json
from binsight.utils.progress import progress
from binsight.utils.signals import STOP_SIGNALS, StopFlag, stop_on_signals

DEFAULT_BUCKET = "aft-vbi-pds"
DEFAULT_REGION = "us-east-1"
REPORT_NAME = "fetch_report.json"
INTERRUPTED = "interrupted by the user"  # the report's `aborted` after Ctrl-C / SIGTERM

log = logging.getLogger(__name__)


@dataclass
class FetchOptions:
    """Where to download from and how hard to try.

    Attributes:
        bucket: S3 bucket holding ``bin-images/`` and ``metadata/``.
        region: bucket region (``aft-vbi-pds`` lives in us-east-1).
        endpoint_url: any S3-compatible endpoint (MinIO, moto, …); None means AWS.
        workers: parallel download threads.
        retries: retries per object after the first attempt, for network errors, 5xx and throttling.
        timeout: connect and read timeout of each request, in seconds.
        sign_request: sign with the standard AWS credentials (env vars, profile); default anonymous.
        backoff: delay before the first retry in seconds; doubles each retry (with jitter) up to ``backoff_cap``.
        backoff_cap: longest delay between two retries.
        probe: make one small request first so an unreachable endpoint fails fast with one clear message.
    """

    bucket: str = DEFAULT_BUCKET
    region: str = DEFAULT_REGION
    endpoint_url: str | None = None
    workers: int = 8
    retries: int = 5
    timeout: float = 30.0
    sign_request: bool = False
    backoff: float = 0.5
    backoff_cap: float = 20.0
    probe: bool = True

    def validate(self) -> None:
        """Raise BinsightError when an option is out of range."""
        if self.workers < 1:
            raise BinsightError(f"workers must be at least 1, got {self.workers}")
        if self.retries < 0:
            raise BinsightError(f"retries must be 0 or more, got {self.retries}")
        if self.timeout <= 0:
            raise BinsightError(f"timeout must be positive, got {self.timeout}")
        if self.backoff < 0 or self.backoff_cap < 0:
            raise BinsightError("backoff and backoff_cap must be 0 or more")
        if not self.bucket:
            raise BinsightError("bucket must not be empty")


@dataclass
class FetchReport:
    """Counts of one run, written to ``<out>/fetch_report.json``. ``downloaded`` includes ``resumed`` ones."""

    bucket: str
    endpoint_url: str
    out: str
    ids: int
    requested: int
    downloaded: int = 0
    skipped: int = 0
    resumed: int = 0
    failed: int = 0
    not_attempted: int = 0
    bytes: int = 0
    seconds: float = 0.0
    aborted: str | None = None
    failures: list[dict[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.not_attempted == 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        """Human-readable lines: the counts, then up to 20 failures."""
        lines = [
            f"fetch s3://{self.bucket} ({self.endpoint_url}) into {self.out}: {self.requested} files "
            f"({self.ids} ids) in {self.seconds:.1f} s",
            f"  downloaded {self.downloaded} (resumed {self.resumed}), skipped {self.skipped} already complete, "
            f"failed {self.failed}, not attempted {self.not_attempted}, {self.bytes} bytes",
        ]
        if self.aborted:
            lines.append(f"  stopped early: {self.aborted}")
        for failure in self.failures[:20]:
            lines.append(f"  FAILED {failure['key']}: {failure['reason']} ({failure['detail']})")
        if len(self.failures) > 20:
            lines.append(f"  … and {len(self.failures) - 20} more in {Path(self.out) / REPORT_NAME}")
        return "\n".join(lines)


def make_client(options: FetchOptions):
    """A boto3 S3 client: anonymous unless ``sign_request``; retries are ours, not botocore's."""
    import boto3
    from botocore import UNSIGNED
    from botocore.config import Config

    config = Config(
        signature_version=None if options.sign_request else UNSIGNED,
        connect_timeout=options.timeout,
        read_timeout=options.timeout,
        retries={"total_max_attempts": 1},
        max_pool_connections=max(10, options.workers + 2),
        # Path-style addressing works with every S3-compatible store (MinIO, moto) and with IP endpoints.
        s3={"addressing_style": "path"} if options.endpoint_url else None,
    )
    return boto3.session.Session().client(
        "s3", region_name=options.region, endpoint_url=options.endpoint_url, config=config
    )


def fetch_dataset(
    ids: list[str], out: str | Path, options: FetchOptions | None = None, *, client=None, faults: Faults | None = None
) -> FetchReport:
    """Download ``bin-images/<id>.jpg`` and ``metadata/<id>.json`` of every id into ``out`` (ABID layout).

    Complete files already in ``out`` are validated and skipped; ``.part`` files are resumed. The report is
    returned and written to ``out/fetch_report.json``.

    Raises:
        BinsightError: when the endpoint cannot be reached at all, the bucket does not exist, or credentials
            are needed and missing.
        Interrupted: on Ctrl-C, after writing the report; a re-run resumes.
    """
    options = options or FetchOptions()
    options.validate()
    out = Path(out)
    client = client or make_client(options)
    endpoint = client.meta.endpoint_url
    jobs = [key for image_id in ids for key in object_keys(image_id)]
    report = FetchReport(bucket=options.bucket, endpoint_url=endpoint, out=str(out), ids=len(ids), requested=len(jobs))
    if options.probe and jobs:
        probe_endpoint(client, options, jobs[0])
    out.mkdir(parents=True, exist_ok=True)

    stop = StopFlag()
    start = time.monotonic()
    bar = progress(total=len(jobs), unit="file", desc="fetch")

    faults = faults or Faults.from_env()

    def task(key: str) -> FileResult:
        faults.before_fetch(stop)
        return fetch_one(client, options, key, out / key, stop)

    pool = ThreadPoolExecutor(max_workers=options.workers, thread_name_prefix="binsight-fetch")
    pending: set[Future[FileResult]] = set()
    queued = iter(jobs)
    # SIGINT/SIGTERM set the flag (a KeyboardInterrupt raised at an arbitrary point of the main thread could land
    # inside a future's lock); workers see it between chunks and return at once, the loop collects their results.
    signals = stop_on_signals(
        stop,
        then="stopping after the files in progress (again to abort now)",
        reason=INTERRUPTED,
        code="interrupted",
        abort_on_second=STOP_SIGNALS,
    )
    with signals:
        try:
            while True:
                # Bounded submission: a 500k-object list must not become 500k futures at once.
                while not stop.requested and len(pending) < options.workers * 4:
                    key = next(queued, None)
                    if key is None:
                        break
                    pending.add(pool.submit(task, key))
                if not pending:
                    break
                # A timeout, so a stop request is acted on even while every worker is busy.
                done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
                for future in done:
                    _add_result(report, future.result())
                    bar.update(1)
                if report.failed:
                    bar.set_postfix(failed=report.failed, refresh=False)
        except KeyboardInterrupt:  # a second Ctrl-C, or a fetch run outside the main thread
            stop.request(INTERRUPTED, "interrupted")
            for future in pending:
                future.cancel()
        except BaseException:
            stop.request("stopped after an error", "error")
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            bar.close()
    for future in pending:  # after a KeyboardInterrupt: what the workers finished before the pool shut down
        if future.done() and not future.cancelled():
            _add_result(report, future.result())
    interrupted = stop.code == "interrupted"

    report.not_attempted += len(jobs) - (report.downloaded + report.skipped + report.failed + report.not_attempted)
    report.aborted = stop.reason
    report.seconds = round(time.monotonic() - start, 3)
    atomic_write_json(out / REPORT_NAME, report.to_dict())
    if interrupted:
        raise Interrupted(
            f"fetch interrupted after {report.downloaded} downloads and {report.skipped} skips; "
            f"re-run the same command to resume (report: {out / REPORT_NAME})"
        )
    return report


def _add_result(report: FetchReport, result: FileResult) -> None:
    if result.status == "downloaded":
        report.downloaded += 1
        report.resumed += int(result.resumed)
    elif result.status == "skipped":
        report.skipped += 1
    elif result.status == "not_attempted":
        report.not_attempted += 1
    else:
        report.failed += 1
        report.failures.append({"key": result.key, "reason": result.reason or "error", "detail": result.detail})
    report.bytes += result.bytes


def read_report(out: str | Path) -> dict[str, Any]:
    """The last ``fetch_report.json`` written into ``out``."""
    return json.loads((Path(out) / REPORT_NAME).read_text())
