"""One S3 object: a resumable, validated, atomic download; error classification; the reachability probe."""

from __future__ import annotations

import json
import logging
import os
import random
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from binsight.errors import BinsightError
from binsight.utils.signals import StopFlag

if TYPE_CHECKING:
    from binsight.data.fetch import FetchOptions

log = logging.getLogger(__name__)

_CHUNK = 1 << 16
# S3 error codes worth retrying besides any 5xx: throttling and server-side timeouts.
_TRANSIENT_CODES = {
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "TooManyRequests",
    "RequestLimitExceeded",
    "RequestTimeout",
    "RequestTimeoutException",
    "InternalError",
    "ServiceUnavailable",
}
NO_CREDENTIALS = (
    "--sign-request needs AWS credentials and none were found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
    "(or AWS_PROFILE), or drop --sign-request to read a public bucket anonymously"
)


@dataclass
class FileResult:
    """What happened to one object. ``status`` is downloaded, skipped, failed or not_attempted."""

    key: str
    status: str
    reason: str | None = None  # when failed: not_found, forbidden, corrupt, network, error, interrupted
    detail: str = ""
    bytes: int = 0
    resumed: bool = False


class _Failure(Exception):
    def __init__(self, reason: str, detail: str, *, transient: bool = False, unreachable: bool = False):
        super().__init__(detail)
        self.reason, self.detail, self.transient, self.unreachable = reason, detail, transient, unreachable


class _RangeNotSatisfiable(Exception):
    def __init__(self, size: int | None):
        super().__init__(f"range not satisfiable (object size {size})")
        self.size = size


class _Stopped(Exception):
    pass


def backoff_delay(attempt: int, options: FetchOptions) -> float:
    """Delay before retry ``attempt`` (1-based): exponential, with "equal jitter" so workers don't retry in step."""
    ceiling = min(options.backoff_cap, options.backoff * 2 ** (attempt - 1))
    return ceiling / 2 + random.uniform(0, ceiling / 2)


def validate_file(path: Path, kind: str) -> str | None:
    """Return None when ``path`` holds a complete, valid object of ``kind`` (json or image), else why not."""
    try:
        if kind == "json":
            try:
                obj = json.loads(path.read_bytes())
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                return f"invalid JSON: {exc}"
            return None if isinstance(obj, dict) else f"metadata is a JSON {type(obj).__name__}, not an object"
        return _validate_image(path)
    except OSError as exc:
        return f"cannot read: {exc}"


def _validate_image(path: Path) -> str | None:
    from PIL import Image, ImageFile

    try:
        with Image.open(path) as im:
            fmt = im.format
            # JPEG draft mode decodes at 1/8 scale: every byte is still read, so truncation shows, at a fraction
            # of the cost of a full decode.
            im.draft("RGB", (1, 1))
            im.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        return f"image does not decode: {exc}"
    if fmt == "JPEG" and ImageFile.LOAD_TRUNCATED_IMAGES:
        # Someone in this process told PIL to pad truncated images silently: check the end-of-image marker.
        with open(path, "rb") as f:
            f.seek(max(0, path.stat().st_size - 32))
            if b"\xff\xd9" not in f.read():
                return "image does not decode: JPEG has no end-of-image marker (truncated)"
    return None


def _network_errors() -> tuple[type[BaseException], ...]:
    import http.client

    import urllib3.exceptions
    from botocore.exceptions import ConnectionError as BotoConnectionError
    from botocore.exceptions import HTTPClientError, IncompleteReadError

    return (
        BotoConnectionError,
        HTTPClientError,
        IncompleteReadError,
        urllib3.exceptions.HTTPError,
        http.client.HTTPException,
        ConnectionError,
        TimeoutError,
    )


def describe_network_error(exc: BaseException) -> str:
    """A short cause ("[Errno 111] Connection refused") instead of botocore's long repr of the connection."""
    underlying = getattr(exc, "kwargs", {}).get("error")
    text = str(underlying or exc)
    match = re.search(r"\[Errno [^\]]+\][^'\"]*", text)
    return match.group(0).strip().rstrip(")") if match else text


def _network_failure(exc: BaseException) -> _Failure:
    from botocore.exceptions import ConnectTimeoutError, EndpointConnectionError, ProxyConnectionError

    unreachable = isinstance(exc, EndpointConnectionError | ConnectTimeoutError | ProxyConnectionError)
    return _Failure("network", describe_network_error(exc), transient=True, unreachable=unreachable)


def _client_failure(exc) -> _Failure | _RangeNotSatisfiable:
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    detail = f"{code or status}: {error.get('Message') or 'no message'}"
    if code == "InvalidRange" or status == 416:
        size = error.get("ActualObjectSize")
        return _RangeNotSatisfiable(int(size) if str(size or "").isdigit() else None)
    if code == "NoSuchBucket":
        return _Failure("not_found", f"{detail} (the bucket does not exist)")
    if status == 404 or code in ("NoSuchKey", "NotFound"):
        return _Failure("not_found", detail)
    if status == 403 or code in ("AccessDenied", "Forbidden"):
        return _Failure("forbidden", detail)
    if status >= 500 or status == 429 or code in _TRANSIENT_CODES:
        return _Failure("network", detail, transient=True)
    return _Failure("error", detail)


def probe_endpoint(client, options: FetchOptions, key: str) -> None:
    """One tiny ranged GET before the work starts, so an offline machine fails fast with one clear message.

    Any answer from the server (even 404 or 403) proves the endpoint is reachable; the per-file logic deals with
    it. Raises BinsightError when the endpoint cannot be reached, the bucket does not exist, or credentials are
    missing.
    """
    from botocore.exceptions import ClientError, NoCredentialsError

    endpoint = client.meta.endpoint_url
    attempts = min(options.retries, 2) + 1
    cause = ""
    for attempt in range(1, attempts + 1):
        try:
            client.get_object(Bucket=options.bucket, Key=key, Range="bytes=0-0")["Body"].close()
            return
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "NoSuchBucket":
                raise BinsightError(
                    f"bucket {options.bucket!r} does not exist at S3 endpoint {endpoint}: check --bucket and "
                    "--endpoint-url"
                ) from None
            return
        except NoCredentialsError:
            raise BinsightError(NO_CREDENTIALS) from None
        except _network_errors() as exc:
            cause = describe_network_error(exc)
            log.debug("probe %d/%d of %s failed: %s", attempt, attempts, endpoint, cause)
        if attempt < attempts:
            time.sleep(backoff_delay(attempt, options))
    raise BinsightError(f"cannot reach S3 endpoint {endpoint} ({cause}): check your network or pass --endpoint-url")


def fetch_one(client, options: FetchOptions, key: str, dest: Path, stop: StopFlag) -> FileResult:
    """Make ``dest`` a complete, valid copy of ``key``: skip it when already valid, else download (resuming a
    ``.part``), validate and rename into place. Never raises for remote problems: they go into the result."""
    kind = "json" if key.endswith(".json") else "image"
    if stop.requested:
        return FileResult(key, "not_attempted", detail=stop.reason or "")
    if dest.is_file():
        problem = validate_file(dest, kind)
        if problem is None:
            return FileResult(key, "skipped")
        log.warning("%s is invalid (%s); downloading it again", dest, problem)
        dest.unlink()
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    result = FileResult(key, "failed")
    fresh_retry_left = True
    failures = 0
    while True:
        if stop.requested:
            result.reason = "interrupted" if stop.code == "interrupted" else "network"
            result.detail = stop.reason or ""
            return result
        offset = part.stat().st_size if part.exists() else 0
        try:
            _download(client, options.bucket, key, part, offset, stop, result)
        except _RangeNotSatisfiable as exc:
            if exc.size is None or exc.size != offset:
                # The .part is longer than the object, so it is from another version of it: start over.
                part.unlink(missing_ok=True)
                continue
            # Else the .part already holds every byte (a run stopped between the last byte and the rename).
        except _Stopped:
            continue
        except _Failure as exc:
            if not exc.transient:
                part.unlink(missing_ok=True)
                result.reason, result.detail = exc.reason, exc.detail
                return result
            failures += 1
            if failures > options.retries:
                if exc.unreachable:
                    stop.request(
                        f"S3 endpoint unreachable ({exc.detail}); no further downloads were started", "network"
                    )
                result.reason, result.detail = "network", f"{exc.detail} (gave up after {failures} attempts)"
                return result
            log.debug("%s: %s; retry %d/%d", key, exc.detail, failures, options.retries)
            stop.wait(backoff_delay(failures, options))
            continue
        result.resumed = offset > 0
        problem = validate_file(part, kind)
        if problem is None:
            os.replace(part, dest)
            result.status = "downloaded"
            return result
        part.unlink(missing_ok=True)
        if fresh_retry_left:
            # A bad resume (stale .part) or a glitch in transit: one more download from scratch decides.
            fresh_retry_left = False
            log.warning("%s failed validation (%s); downloading it once more from scratch", key, problem)
            continue
        result.reason, result.detail = "corrupt", problem
        return result


def _download(client, bucket: str, key: str, part: Path, offset: int, stop: StopFlag, result: FileResult) -> None:
    """GET ``key`` (from byte ``offset`` when resuming) into ``part``, counting bytes received into ``result``."""
    from botocore.exceptions import ClientError, FlexibleChecksumError, NoCredentialsError

    request = {"Bucket": bucket, "Key": key}
    if offset:
        request["Range"] = f"bytes={offset}-"
    try:
        response = client.get_object(**request)
    except ClientError as exc:
        raise _client_failure(exc) from None
    except NoCredentialsError:
        raise BinsightError(NO_CREDENTIALS) from None
    except _network_errors() as exc:
        raise _network_failure(exc) from None
    body = response["Body"]
    if offset:
        match = re.match(r"bytes (\d+)-", response.get("ContentRange") or "")
        # No Content-Range: the server ignored the Range header and is sending the whole object.
        offset = int(match.group(1)) if match else 0
    expected = offset + int(response.get("ContentLength") or 0)
    written = 0
    bad_checksum = False
    try:
        with open(part, "r+b" if offset else "wb") as f:
            f.seek(offset)
            f.truncate()
            chunks = body.iter_chunks(_CHUNK)
            while True:
                if stop.requested:
                    raise _Stopped
                try:
                    chunk = next(chunks)
                except StopIteration:
                    break
                except FlexibleChecksumError:
                    bad_checksum = True
                    break
                except (*_network_errors(), OSError) as exc:
                    raise _network_failure(exc) from None
                f.write(chunk)
                written += len(chunk)
                result.bytes += len(chunk)
    finally:
        body.close()
    if bad_checksum:
        part.unlink(missing_ok=True)
        raise _Failure("network", "checksum mismatch in transit", transient=True)
    if offset + written != expected:
        raise _Failure("network", f"connection closed after {offset + written} of {expected} bytes", transient=True)
