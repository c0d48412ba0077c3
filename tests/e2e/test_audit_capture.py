"""``binsight serve --capture`` writes requests, photos and responses; ``binsight audit --from-capture`` audits them
through the served endpoint (``--endpoint URL``)."""

from __future__ import annotations

import csv
import json
import random
import stat

import httpx
import pytest

from binsight.audit.capture import CAPTURE_FILE, CaptureWriter, read_capture
from tests.conftest import run_cli
from tests.e2e.test_serve import jpeg_bytes, start_server
from tests.integration.audit_helpers import make_artifact


@pytest.fixture(scope="module")
def captured(tmp_path_factory):
    root = tmp_path_factory.mktemp("capture")
    artifact = make_artifact(root / "artifact")
    folder = root / "capture"
    server = start_server(artifact, root, "--capture", str(folder), "--threads", "1")
    try:
        server.wait_ready()
        with httpx.Client(base_url=server.url, timeout=30) as client:
            for seed, expected in ((1, 3), (2, 5), (1, 2)):  # the first photo twice, with two records
                headers = {
                    "Content-Type": "image/jpeg",
                    "X-Amzn-SageMaker-Custom-Attributes": f"expected_quantity={expected}",
                }
                assert client.post("/invocations", content=jpeg_bytes(seed), headers=headers).status_code == 200
            assert (
                client.post("/invocations", content=jpeg_bytes(3), headers={"Content-Type": "image/jpeg"}).status_code
                == 200
            )
            bad = client.post("/invocations", content=b"not an image", headers={"Content-Type": "image/jpeg"})
            assert bad.status_code == 400  # failed requests are not captured
        yield server, folder, root
    finally:
        server.stop()


def test_capture_writes_private_content_addressed_lines(captured):
    _, folder, _ = captured
    entries = read_capture(folder)
    assert [e["expected_quantity"] for e in entries] == [3, 5, 2, None]
    assert entries[0]["sha256"] == entries[2]["sha256"] and entries[0]["photo"] == entries[2]["photo"]
    assert len(list((folder / "photos").rglob("*.jpg"))) == 3
    assert all(e["response"]["model"]["version"] == "v1" and e["request_id"] for e in entries)
    assert entries[0]["response"]["check"]["expected_quantity"] == 3
    assert stat.S_IMODE((folder / CAPTURE_FILE).stat().st_mode) == 0o600
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    photo = folder / entries[0]["photo"]
    assert stat.S_IMODE(photo.stat().st_mode) == 0o600 and stat.S_IMODE(photo.parent.stat().st_mode) == 0o700


def test_audit_from_capture_through_the_endpoint(captured):
    server, folder, root = captured
    out = root / "audit"
    run_cli("audit", "--from-capture", folder, "--endpoint", server.url, "--out", out)
    with (out / "audit.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 and rows[0]["decision"] == "count"  # the request without a record: a person counts it
    entries = {e["id"]: e for e in read_capture(folder)[:4]}
    for row in rows:
        served = entries[row["bin_id"]]["response"]
        assert row["model_version"] == "v1"
        assert float(row["confidence"]) == pytest.approx(served["confidence"], abs=1e-5)
        if row["expected"]:
            assert row["decision"] == served["check"]["decision"]  # the audit and the endpoint agree
    assert json.loads((out / "audit.json").read_text())["summary"]["scored"] == 3  # 3 distinct photos
    from binsight.review.store import ReviewStore

    flagged = sum(r["decision"] in ("count", "mismatch", "review") for r in rows)
    assert ReviewStore(out).import_audit() == flagged  # the same photo twice is two bins in the queue too


def test_capture_rate_samples_requests(tmp_path):
    writer = CaptureWriter(tmp_path / "c", rate=0.25, rng=random.Random(0))
    written = sum(writer.record([b"x"], [1], [{"p": 1}], {"request_id": f"r{i}"}) for i in range(400))
    writer.close()
    assert 70 <= written <= 130 and len(read_capture(tmp_path / "c")) == written
    with pytest.raises(ValueError, match="capture rate"):
        CaptureWriter(tmp_path / "d", rate=0)


def test_endpoint_scorer_reports_a_rejected_photo_and_keeps_going(captured):
    from binsight.audit.scorers import EndpointScorer
    from binsight.errors import DataError

    server, _, _ = captured
    scorer = EndpointScorer(server.url + "/invocations")
    try:
        bad, good = scorer.score([b"not a photo", jpeg_bytes(5)])
    finally:
        scorer.close()
    assert isinstance(bad, DataError) and "rejected" in str(bad)
    assert scorer.version == "v1" and good.shape == (5,) and abs(good.sum() - 1) < 1e-4


def test_audit_with_a_local_endpoint_by_name(captured, home):
    _, folder, root = captured
    artifact = make_artifact(root / "banded", version="v2", thresholds={"review_low": 0.1, "review_high": 0.7})
    run_cli("endpoint", "create", "audit-ep", "--model", artifact, timeout=120)
    try:
        out = root / "by-name"
        run_cli("audit", "--from-capture", folder, "--endpoint", "audit-ep", "--out", out)
        summary = json.loads((out / "audit.json").read_text())["summary"]
        assert summary["model_version"] == "v2" and summary["bins"] >= 4
        assert summary["thresholds"] == {"review_low": 0.1, "review_high": 0.7}  # read from the endpoint's model
    finally:
        run_cli("endpoint", "delete", "audit-ep", timeout=60)
