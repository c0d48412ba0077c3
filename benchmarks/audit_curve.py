"""Operating-curve benchmark: how many wrong records ``binsight audit`` catches per share of bins reviewed.

    .venv/bin/python benchmarks/audit_curve.py --run RUN --manifest SPLIT/test.csv
                                               [--errors 0.05,0.1,0.2] [--seeds 0,1,2,3,4] [--threads 2]

The test split is scored once (``binsight.audit.runner.run_audit``; probabilities kept in
``$BINSIGHT_BENCH_DIR/audit-curve/results.jsonl``, so re-runs only re-rank). Then, for each error rate P and
seed, the records of a fraction P of the bins are changed to another count (uniformly among the other counts,
``binsight.audit.curve.corrupt_records``) and the bins are ranked by P(record wrong) = 1 - p(record). Reported per
policy, as the mean (min-max) over seeds: the share of bins to review to catch 80 % and 95 % of the wrong
records, and the share caught when reviewing 30 % of the bins. Naive policies: random review, review every bin
whose top prediction differs from its record, review every bin the decision band does not confirm.
Results: ``benchmarks/results/audit_curve.json`` and a markdown table on stdout.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/machine.py
from machine import machine_info  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"


def _stats(values: list[float | None]) -> dict:
    """Mean, min and max of the values; ``never`` counts the seeds where the target was not reached."""
    got = [v for v in values if v is not None]
    out = {"never": len(values) - len(got)}
    if got:
        out.update(mean=sum(got) / len(got), min=min(got), max=max(got))
    return out


def _fmt(stat: dict) -> str:
    if "mean" not in stat:
        return "never"
    text = f"{100 * stat['mean']:.1f} % ({100 * stat['min']:.0f}–{100 * stat['max']:.0f})"
    return text + (f", never in {stat['never']}" if stat["never"] else "")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="trained run directory (temperature fitted by evaluate)")
    parser.add_argument("--manifest", required=True, help="the labelled bins: a split manifest or labels CSV")
    parser.add_argument("--errors", default="0.05,0.1,0.2", help="error rates to simulate")
    parser.add_argument("--seeds", default="0,1,2,3,4", help="seeds per error rate")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--out", default=None, help="results JSON (default benchmarks/results/audit_curve.json)")
    args = parser.parse_args()

    from binsight.audit.curve import corrupt_records, operating_curve
    from binsight.audit.runner import run_audit
    from binsight.audit.scorers import LocalScorer
    from binsight.audit.sources import open_source
    from binsight.inference.predictor import Predictor, label_count

    work = Path(os.environ.get("BINSIGHT_BENCH_DIR", "/tmp/binsight-bench")) / "audit-curve"
    scorer = LocalScorer(Predictor(args.run, threads=args.threads), workers=4)
    refs = open_source(args.manifest)
    t0 = time.perf_counter()
    base = run_audit(refs, scorer, work, source=args.manifest, write=False, show_progress=True)
    score_s = time.perf_counter() - t0
    counts = [label_count(c) for c in scorer.class_labels]
    rates = [float(x) for x in args.errors.split(",")]
    seeds = [int(x) for x in args.seeds.split(",")]
    table = {}
    for rate in rates:
        curves = []
        for seed in seeds:
            corrupted, _ = corrupt_records(refs, rate, seed, counts)
            rows = run_audit(corrupted, scorer, work, write=False, show_progress=False)["rows"]
            curves.append(operating_curve(rows, seed=seed, error_rate=rate))
        policies = {}
        for i, policy in enumerate(curves[0]["policies"]):
            per_seed = [c["policies"][i] for c in curves]
            policies[policy["name"]] = {
                key: _stats([p[key] for p in per_seed]) for key in ("rate_80", "rate_95", "caught_at_30")
            }
            if "point" in policy:
                policies[policy["name"]]["review_rate"] = _stats([p["point"]["rate"] for p in per_seed])
        table[str(rate)] = {"bins": curves[0]["bins"], "errors": [c["errors"] for c in curves], "policies": policies}
    metrics_file = Path(args.run) / "metrics.json"
    metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
    result = {
        "benchmark": "audit_curve",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "run": str(args.run),
        "model_version": scorer.version,
        "temperature": scorer.predictor.meta.temperature,
        "test_accuracy": metrics.get("accuracy"),
        "test_macro_f1": metrics.get("macro_f1"),
        "manifest": args.manifest,
        "bins": base["summary"]["bins"],
        "scored_now": base["summary"]["scored"],
        "score_seconds": round(score_s, 1),
        "seeds": seeds,
        "error_rates": table,
    }
    out = Path(args.out) if args.out else RESULTS / "audit_curve.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"model {scorer.version} (test accuracy {result['test_accuracy']}), {result['bins']} bins, "
        f"seeds {seeds}; scored in {score_s:.0f} s"
    )
    for rate, entry in table.items():
        print(f"\nerror rate {float(rate):.0%} ({entry['errors']} wrong records per seed)\n")
        print("| policy | review for 80 % caught | review for 95 % caught | caught at 30 % reviewed |")
        print("|---|---|---|---|")
        for name, stats in entry["policies"].items():
            point = f" (reviews {_fmt(stats['review_rate'])})" if "review_rate" in stats else ""
            cells = [_fmt(stats[key]) for key in ("rate_80", "rate_95", "caught_at_30")]
            print(f"| {name}{point} | " + " | ".join(cells) + " |")
    print(f"\n→ {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
