"""``binsight audit`` on real files: broken bins are reported and the audit finishes; re-runs reuse results."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from binsight.audit.bins import audit_bin
from binsight.audit.runner import run_audit
from binsight.audit.scorers import LocalScorer
from binsight.audit.sources import open_source
from binsight.inference.predictor import Predictor
from tests.conftest import cli_env, run_cli
from tests.integration.audit_helpers import make_abid_folder, make_artifact

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def artifact(tmp_path_factory) -> Path:
    return make_artifact(tmp_path_factory.mktemp("model") / "artifact")


@pytest.fixture(scope="module")
def abid(tmp_path_factory) -> Path:
    return make_abid_folder(tmp_path_factory.mktemp("abid"))


def _rows(out: Path) -> dict[str, dict]:
    with (out / "audit.csv").open() as f:
        return {r["bin_id"]: r for r in csv.DictReader(f)}


def test_cli_audit_reports_every_broken_bin_and_finishes(artifact, abid, tmp_path):
    out = tmp_path / "audit"
    proc = run_cli("audit", abid, "--model", artifact, "--out", out, "--workers", "2")
    rows = _rows(out)
    assert rows["corrupt"]["decision"] == "error" and "unreadable" in rows["corrupt"]["reason"]
    assert rows["orphan"]["decision"] == "error"  # metadata without a photo
    assert rows["nometa"]["status"] == "no_record" and rows["nometa"]["decision"] == "count"
    assert "missing metadata" in rows["nometa"]["reason"]
    assert rows["badjson"]["status"] == "no_record" and "unreadable metadata" in rows["badjson"]["reason"]
    for bin_id, count in (("zero", "0"), ("seven", "7")):
        assert rows[bin_id]["status"] == "out_of_range" and rows[bin_id]["expected"] == count
    good = [r for r in rows.values() if r["status"] == "ok"]
    assert len(good) == 12
    for r in good:
        probs = [float(r[f"p_{k}"]) for k in "12345"]
        assert abs(sum(probs) - 1) < 1e-4
        assert float(r["p_wrong"]) == pytest.approx(1 - probs[int(r["expected"]) - 1], abs=2e-6)
    # ranked: people count first, then P(record wrong) descending, unreadable last
    ranked = list(rows.values())
    risks = [float(r["p_wrong"]) for r in ranked if r["status"] == "ok"]
    assert risks == sorted(risks, reverse=True)
    assert [r["decision"] for r in ranked[-2:]] == ["error", "error"]
    report = json.loads((out / "audit.json").read_text())
    assert report["summary"]["bins"] == 18 and report["summary"]["scored"] == 16
    html = (out / "audit.html").read_text()
    assert "data:image/jpeg;base64," in html and "corrupt" in html and "<script" not in html
    assert "audited 18 bins" in proc.stderr


def test_rerun_reuses_results_and_a_new_model_version_rescored(artifact, abid, tmp_path):
    out = tmp_path / "audit"
    refs = open_source(str(abid))
    first = run_audit(refs, LocalScorer(Predictor(artifact)), out, show_progress=False)
    assert first["summary"]["scored"] == 16
    again = run_audit(refs, LocalScorer(Predictor(artifact)), out, show_progress=False)
    assert again["summary"]["scored"] == 0 and again["summary"]["reused"] == 16
    assert [r.to_json() for r in again["rows"]] == [r.to_json() for r in first["rows"]]
    # a torn last line (a killed run) is ignored, and the bin it stood for is scored again
    results = out / "results.jsonl"
    lines = results.read_text().splitlines(keepends=True)
    results.write_text("".join(lines[:-1]) + lines[-1][:20])
    third = run_audit(refs, LocalScorer(Predictor(artifact)), out, show_progress=False)
    assert third["summary"]["scored"] == 1
    other = make_artifact(tmp_path / "v2", version="v2")
    fourth = run_audit(refs, LocalScorer(Predictor(other)), out, show_progress=False)
    assert fourth["summary"]["scored"] == 16


def test_audit_bin_is_the_per_bin_work(artifact, abid):
    scorer = LocalScorer(Predictor(artifact))
    data = (abid / "bin-images" / "000.jpg").read_bytes()
    row = audit_bin(data, 1, scorer, bin_id="000")
    assert row.status == "ok" and row.sha256 and row.model_version == "v1"
    assert row.p_wrong == pytest.approx(1 - row.probabilities["1"], abs=2e-6)
    bad = audit_bin(b"garbage", 3, scorer, bin_id="x")
    assert bad.decision == "error" and "not an image" in bad.reason
    assert audit_bin(data, 1, Predictor(artifact), bin_id="000") == row  # a Predictor works as well


def test_simulated_errors_give_an_operating_curve(artifact, abid, tmp_path):
    out = tmp_path / "curve"
    proc = run_cli("audit", abid, "--model", artifact, "--out", out, "--simulate-errors", "0.3", "--seed", "1")
    curve = json.loads((out / "curve.json").read_text())
    rows = [r for r in _rows(out).values() if r["status"] == "ok"]
    assert curve["bins"] == 12 and curve["errors"] == sum(r["expected"] != r["truth"] for r in rows) >= 3
    assert all(r["truth"] in "12345" and r["expected"] in "12345" for r in rows)  # 0 and 7 never used
    caught = curve["curve"]["caught"]
    assert caught == sorted(caught) and caught[-1] == 1.0
    names = [p["name"] for p in curve["policies"]]
    assert "random review" in names and any("top prediction" in n for n in names)
    assert (out / "curve.png").stat().st_size > 5000
    assert "Operating curve" in (out / "audit.html").read_text()
    assert "to catch 80% of wrong records" in proc.stderr


def test_s3_prefix_in_abid_layout(artifact, abid, tmp_path, monkeypatch, s3_server):
    from tests.integration.gateway_servers import s3_bucket, set_aws_test_env

    set_aws_test_env(monkeypatch, tmp_path)
    with s3_bucket(s3_server, "bins") as s3:
        for sub in ("bin-images", "metadata"):
            for path in sorted((abid / sub).iterdir()):
                s3.put_object(Bucket="bins", Key=f"day1/{sub}/{path.name}", Body=path.read_bytes())
        out = tmp_path / "s3audit"
        run_cli(
            "audit", "s3://bins/day1", "--endpoint-url", s3_server, "--model", artifact, "--out", out, env=cli_env()
        )
        rows = _rows(out)
        local = _rows_of_local_audit(artifact, abid, tmp_path)
    assert set(rows) == set(local) - {"orphan"}  # S3 lists photos; a record without one is not a bin there
    for bin_id, row in rows.items():
        assert (row["status"], row["p_wrong"]) == (local[bin_id]["status"], local[bin_id]["p_wrong"]), bin_id
    assert rows["000"]["location"] == "s3://bins/day1/bin-images/000.jpg"
    assert (out / "s3-records" / "000.json").is_file()  # the record that was checked
    flagged = [r for r in rows.values() if r["decision"] not in ("confirmed", "error")]
    photos = list((out / "photos").rglob("*.jpg"))
    assert len(photos) == len({r["sha256"] for r in flagged})  # kept for the report and the review app


def _rows_of_local_audit(artifact, abid, tmp_path) -> dict[str, dict]:
    out = tmp_path / "local"
    run_audit(open_source(str(abid)), LocalScorer(Predictor(artifact)), out, show_progress=False)
    return _rows(out)


class StopAfter:
    """A LocalScorer that is interrupted (Ctrl-C) when asked to score its ``n``-th batch."""

    def __init__(self, scorer: LocalScorer, n: int) -> None:
        self.scorer, self.n, self.calls = scorer, n, 0
        self.version, self.class_labels, self.thresholds = scorer.version, scorer.class_labels, scorer.thresholds

    def score(self, images):
        self.calls += 1
        if self.calls == self.n:
            raise KeyboardInterrupt
        return self.scorer.score(images)


def test_an_interrupted_audit_continues_where_it_stopped(artifact, abid, tmp_path):
    out = tmp_path / "audit"
    refs = open_source(str(abid))
    with pytest.raises(KeyboardInterrupt):
        run_audit(refs, StopAfter(LocalScorer(Predictor(artifact)), 3), out, chunk=4, show_progress=False)
    kept = (out / "results.jsonl").read_text().splitlines()
    assert 0 < len(kept) < 16  # the batches scored before Ctrl-C are on disk
    rest = run_audit(refs, LocalScorer(Predictor(artifact)), out, chunk=4, show_progress=False)
    assert rest["summary"]["scored"] == 16 - len(kept)
    fresh = run_audit(refs, LocalScorer(Predictor(artifact)), tmp_path / "fresh", show_progress=False)
    assert [r.to_json() for r in rest["rows"]] == [r.to_json() for r in fresh["rows"]]  # same as never stopped
