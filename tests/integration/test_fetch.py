"""fetch_dataset against real S3-compatible servers on loopback: moto (anonymous GETs on a public bucket) and a
small S3-like server that fails on purpose."""

from __future__ import annotations

import json

import pytest

from binsight.data.fetch import REPORT_NAME, FetchOptions, fetch_dataset, read_report
from binsight.data.fetch_list import read_id_list
from binsight.errors import BinsightError
from tests.conftest import free_port
from tests.integration.test_fetch_support import (
    BUCKET,
    FlakyS3,
    assert_dataset_equals,
    dataset_objects,
    write_udacity_list,
)

IDS = ["00001", "00002", "00003", "00004"]


def options(url: str, **kw) -> FetchOptions:
    kw.setdefault("workers", 2)
    kw.setdefault("retries", 2)
    kw.setdefault("backoff", 0.01)
    kw.setdefault("timeout", 5)
    return FetchOptions(endpoint_url=url, **kw)


def test_fetch_udacity_file_list_downloads_images_and_metadata_anonymously(s3, tmp_path):
    objects = dataset_objects(IDS)
    s3.seed(objects)
    ids = read_id_list(write_udacity_list(tmp_path / "file_list.json", IDS))
    out = tmp_path / "abid"

    report = fetch_dataset(ids, out, options(s3.url))

    assert_dataset_equals(out, objects)
    assert (report.requested, report.downloaded, report.skipped, report.failed) == (8, 8, 0, 0)
    assert report.bytes == sum(len(b) for b in objects.values())
    assert report.ok and report.failures == []
    on_disk = read_report(out)
    assert on_disk["downloaded"] == 8 and on_disk["endpoint_url"] == s3.url and on_disk["bucket"] == BUCKET


def test_rerun_skips_every_complete_file(s3, tmp_path):
    objects = dataset_objects(IDS)
    s3.seed(objects)
    out = tmp_path / "abid"
    fetch_dataset(IDS, out, options(s3.url))

    again = fetch_dataset(IDS, out, options(s3.url))

    assert (again.skipped, again.downloaded, again.bytes, again.failed) == (8, 0, 0, 0)
    assert_dataset_equals(out, objects)


def test_partial_download_resumes_with_a_range_request(s3, tmp_path):
    objects = dataset_objects(IDS)
    s3.seed(objects)
    out = tmp_path / "abid"
    partial = {"bin-images/00002.jpg": 700, "metadata/00003.json": 40}
    for key, n in partial.items():
        part = out / (key + ".part")
        part.parent.mkdir(parents=True, exist_ok=True)
        part.write_bytes(objects[key][:n])

    report = fetch_dataset(IDS, out, options(s3.url))

    assert_dataset_equals(out, objects)
    assert report.resumed == 2 and report.downloaded == 8
    # Only the missing tail of each partial file crossed the wire: proof the Range GET was used.
    assert report.bytes == sum(len(b) for b in objects.values()) - sum(partial.values())


def test_part_holding_every_byte_is_finished_without_downloading(s3, tmp_path):
    objects = dataset_objects(["00001"])
    s3.seed(objects)
    out = tmp_path / "abid"
    part = out / "bin-images" / "00001.jpg.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(objects["bin-images/00001.jpg"])

    report = fetch_dataset(["00001"], out, options(s3.url))

    assert_dataset_equals(out, objects)
    assert report.resumed == 1
    assert report.bytes == len(objects["metadata/00001.json"])


def test_stale_part_from_another_object_is_redownloaded_from_scratch(s3, tmp_path):
    objects = dataset_objects(["00001"])
    s3.seed(objects)
    out = tmp_path / "abid"
    image = objects["bin-images/00001.jpg"]
    part = out / "bin-images" / "00001.jpg.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"\x00" * 300)  # wrong bytes: resuming after them gives an image that does not decode

    report = fetch_dataset(["00001"], out, options(s3.url))

    assert_dataset_equals(out, objects)
    assert report.failed == 0 and report.resumed == 0
    assert report.bytes == (len(image) - 300) + len(image) + len(objects["metadata/00001.json"])


def test_invalid_file_already_in_the_dataset_is_replaced(s3, tmp_path):
    objects = dataset_objects(["00001"])
    s3.seed(objects)
    out = tmp_path / "abid"
    (out / "metadata").mkdir(parents=True)
    (out / "metadata" / "00001.json").write_text('{"EXPECTED_QUANTITY": ')

    report = fetch_dataset(["00001"], out, options(s3.url))

    assert_dataset_equals(out, objects)
    assert report.downloaded == 2 and report.skipped == 0


def test_corrupt_jpeg_and_malformed_json_are_reported_and_kept_out(s3, tmp_path):
    objects = dataset_objects(IDS)
    served = dict(objects)
    served["bin-images/00002.jpg"] = objects["bin-images/00002.jpg"][:400]  # truncated JPEG
    served["metadata/00003.json"] = b'{"EXPECTED_QUANTITY": 3, "BIN_FCSKU'  # malformed JSON
    s3.seed(served)
    out = tmp_path / "abid"

    report = fetch_dataset(IDS, out, options(s3.url))

    bad = {"bin-images/00002.jpg", "metadata/00003.json"}
    assert report.failed == 2 and report.downloaded == 6 and not report.ok
    assert {f["key"]: f["reason"] for f in report.failures} == dict.fromkeys(bad, "corrupt")
    for key in bad:
        assert not (out / key).exists()
    assert_dataset_equals(out, {k: v for k, v in objects.items() if k not in bad})
    assert {f["key"] for f in read_report(out)["failures"]} == bad


def test_missing_and_private_objects_are_reported_without_retries(s3, tmp_path):
    objects = dataset_objects(["00001", "00002"])
    s3.seed(objects, deny=("bin-images/00002.jpg",))
    out = tmp_path / "abid"

    report = fetch_dataset(["00001", "00002", "00009"], out, options(s3.url))

    reasons = {f["key"]: f["reason"] for f in report.failures}
    assert reasons == {
        "bin-images/00002.jpg": "forbidden",
        "bin-images/00009.jpg": "not_found",
        "metadata/00009.json": "not_found",
    }
    assert report.downloaded == 3
    assert not (out / "bin-images" / "00009.jpg").exists()
    assert not list(out.rglob("*.part"))


def test_unreachable_endpoint_fails_fast_with_a_clear_message(tmp_path):
    dead = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(BinsightError) as info:
        fetch_dataset(IDS, tmp_path / "abid", options(dead, retries=1))
    message = str(info.value)
    assert message.startswith(f"cannot reach S3 endpoint {dead} (")
    assert "refused" in message.lower() and "--endpoint-url" in message


def test_endpoint_lost_after_start_stops_every_worker(tmp_path):
    # probe=False: the endpoint "goes away" before the first download, as if it died after the probe.
    dead = f"http://127.0.0.1:{free_port()}"
    ids = [f"{n:05d}" for n in range(1, 31)]

    report = fetch_dataset(ids, tmp_path / "abid", options(dead, retries=1, probe=False))

    assert report.failed >= 1 and report.downloaded == 0
    assert report.failed + report.not_attempted == 60
    assert report.not_attempted > 0  # the rest were never started, not retried one by one
    assert {f["reason"] for f in report.failures} == {"network"}
    assert "unreachable" in report.aborted
    assert json.loads((tmp_path / "abid" / REPORT_NAME).read_text())["not_attempted"] == report.not_attempted


def test_throttling_and_cut_connections_are_retried_and_resumed(tmp_path):
    objects = dataset_objects(["00001", "00002"])
    server = FlakyS3(
        objects,
        faults={
            "bin-images/00001.jpg": ["503", "503"],
            "bin-images/00002.jpg": ["cut"],
            "metadata/00002.json": ["cut"],
        },
    )
    try:
        report = fetch_dataset(["00001", "00002"], tmp_path / "abid", options(server.url, retries=3, probe=False))
    finally:
        server.stop()

    assert_dataset_equals(tmp_path / "abid", objects)
    assert report.downloaded == 4 and report.failed == 0 and report.resumed == 2
    image = objects["bin-images/00002.jpg"]
    ranges = [r for k, r in server.requests if k == "bin-images/00002.jpg"]
    assert ranges == [None, f"bytes={len(image) // 2}-"]
    assert [r for k, r in server.requests if k == "bin-images/00001.jpg"] == [None, None, None]
    assert report.bytes == sum(len(b) for b in objects.values())


def test_retries_run_out_on_a_throttling_server(tmp_path):
    objects = dataset_objects(["00001"])
    server = FlakyS3(objects, faults={"metadata/00001.json": ["503"] * 5})
    try:
        report = fetch_dataset(["00001"], tmp_path / "abid", options(server.url, retries=2, probe=False))
    finally:
        server.stop()

    assert report.downloaded == 1 and report.failed == 1
    (failure,) = report.failures
    assert failure["key"] == "metadata/00001.json" and failure["reason"] == "network"
    assert "SlowDown" in failure["detail"] and "3 attempts" in failure["detail"]
    assert sum(1 for k, _ in server.requests if k == "metadata/00001.json") == 3


def _no_aws_credentials(monkeypatch, tmp_path):
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
    ):
        monkeypatch.delenv(name, raising=False)
    # No credential files, and never the instance-metadata endpoint: tests stay off the network.
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def test_private_bucket_needs_sign_request_with_credentials(s3, tmp_path, monkeypatch):
    objects = dataset_objects(["00001"])
    s3.seed(objects, public=False)
    _no_aws_credentials(monkeypatch, tmp_path)

    anonymous = fetch_dataset(["00001"], tmp_path / "anon", options(s3.url))
    assert anonymous.failed == 2 and {f["reason"] for f in anonymous.failures} == {"forbidden"}

    with pytest.raises(BinsightError, match="needs AWS credentials"):
        fetch_dataset(["00001"], tmp_path / "signed", options(s3.url, sign_request=True))

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    signed = fetch_dataset(["00001"], tmp_path / "signed", options(s3.url, sign_request=True))
    assert signed.downloaded == 2 and signed.ok
    assert_dataset_equals(tmp_path / "signed", objects)
