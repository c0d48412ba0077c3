"""``binsight audit``: check many bins against their records and rank them by the chance the record is wrong."""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path

EPILOG = """examples:
  binsight audit data/abid --model runs/train/exp                 # ABID folder: records from metadata/*.json
  binsight audit labels.csv --endpoint demo                        # a labels CSV, a local endpoint by name
  binsight audit s3://bucket/prefix --model runs/train/exp --endpoint-url http://127.0.0.1:9000
  binsight audit --from-capture runs/capture --model runs/train/exp
  binsight audit split/test.csv --model runs/train/exp --simulate-errors 0.1   # the operating curve
  binsight review runs/audit/test                                  # then let people settle the flagged bins
"""


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "audit",
        help="audit bins against their records: P(record wrong), decisions, ranked report",
        description=textwrap.fill(
            "Score every bin photo of SOURCE with a model, compare the calibrated count distribution with "
            "the bin's record, and write audit.csv, audit.json and a self-contained audit.html ranked by "
            "P(record wrong) = 1 - p(recorded count). SOURCE is a folder in ABID layout (bin-images/ + metadata/), "
            "a labels CSV (file,expected_quantity), a split manifest (path,label,sha256,source) or s3://BUCKET/PREFIX. "
            "Re-running into the same --out skips photos already scored with the same model version (results.jsonl). "
            "Unreadable photos, missing metadata and counts the model cannot predict are reported, never fatal.",
            width=100,
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("source", nargs="?", metavar="SOURCE", help="ABID folder, labels/manifest CSV or s3:// prefix")
    parser.add_argument(
        "--from-capture", metavar="DIR", help="audit the requests captured by `binsight serve --capture DIR`"
    )
    parser.add_argument("--model", metavar="RUN", help="run directory or artifact folder (scored in this process)")
    parser.add_argument("--endpoint", metavar="NAME|URL", help="a local endpoint name or an endpoint URL to score with")
    parser.add_argument("--out", help="output folder (default runs/audit/<source name>); re-use it to resume")
    parser.add_argument(
        "--simulate-errors",
        type=float,
        metavar="P",
        default=None,
        help="change the record of a fraction P of the bins (seeded) and report the operating curve",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of --simulate-errors (default 0)")
    parser.add_argument("--endpoint-url", help="S3-compatible endpoint for s3:// sources (default: AWS)")
    parser.add_argument("--backend", default="torch", help="inference backend for --model (torch, onnx, onnx-int8)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads for --model (default: all cores)")
    parser.add_argument("--workers", type=int, default=8, help="threads loading and decoding photos (default 8)")
    parser.add_argument("--batch-size", type=int, default=32, help="bins per scoring batch (default 32)")
    parser.set_defaults(func=handler)


def handler(args: argparse.Namespace) -> int:
    from binsight.audit.runner import run_audit
    from binsight.audit.scorers import make_scorer
    from binsight.audit.sources import capture_source, open_source
    from binsight.errors import BinsightError

    if bool(args.source) == bool(args.from_capture):
        raise BinsightError("give exactly one of SOURCE or --from-capture DIR")
    if args.batch_size < 1 or args.workers < 1:
        raise BinsightError("--batch-size and --workers must be >= 1")
    source = args.source or args.from_capture
    name = Path(source.rstrip("/")).stem or "audit"
    out = Path(args.out) if args.out else Path("runs") / "audit" / name
    refs = (
        capture_source(Path(source))
        if args.from_capture
        else open_source(source, out=out, endpoint_url=args.endpoint_url)
    )
    if not refs:
        raise BinsightError(f"{source}: no bins found")
    scorer = make_scorer(args.model, args.endpoint, backend=args.backend, threads=args.threads, workers=args.workers)
    simulated = None
    if args.simulate_errors is not None:
        from binsight.audit.curve import corrupt_records
        from binsight.inference.predictor import label_count

        counts = [label_count(c) for c in scorer.class_labels] or None  # an endpoint's classes come later
        refs, _ = corrupt_records(refs, args.simulate_errors, args.seed, counts)
        simulated = {"error_rate": args.simulate_errors, "seed": args.seed}
    try:
        result = run_audit(
            refs, scorer, out, source=source, workers=args.workers, chunk=args.batch_size, simulated=simulated
        )
    except KeyboardInterrupt:
        from binsight.errors import Interrupted

        raise Interrupted(
            f"audit interrupted; the photos scored so far are kept in {out / 'results.jsonl'}: "
            "run the same command again to continue"
        ) from None
    finally:
        scorer.close()
    summary = result["summary"]
    totals = ", ".join(f"{k} {v}" for k, v in sorted(summary["decisions"].items()))
    print(
        f"audited {summary['bins']} bins ({summary['scored']} photos scored now, "
        f"{summary['reused']} reused a stored score): {totals}",
        file=sys.stderr,
    )
    if result["curve"]:
        for p in result["curve"]["policies"]:
            r80 = "never" if p["rate_80"] is None else f"{100 * p['rate_80']:.1f}%"
            r95 = "never" if p["rate_95"] is None else f"{100 * p['rate_95']:.1f}%"
            print(f"  {p['name']}: review {r80} of bins to catch 80% of wrong records, {r95} for 95%", file=sys.stderr)
    print(f"report: {out / 'audit.html'}", file=sys.stderr)
    print(out)
    return 0
