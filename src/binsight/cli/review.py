"""``binsight review``: the web app where people settle flagged bins, and ``binsight review export``."""

from __future__ import annotations

import argparse
import ipaddress
import sys
import textwrap
from pathlib import Path

EPILOG = """examples:
  binsight review runs/audit/day1                          # http://127.0.0.1:8765
  binsight review runs/audit/day1 --host 0.0.0.0           # other machines: a token is made and printed
  binsight review export runs/audit/day1 --out labels.csv  # then: binsight data split --src labels.csv …
"""


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "review",
        usage="binsight review AUDIT_DIR [options]\n       binsight review export AUDIT_DIR [--out CSV]",
        help="web app to settle the bins an audit flagged; `review export` writes the answers as labels",
        description=textwrap.fill(
            "binsight review AUDIT_DIR serves the audit's queue (riskiest bins first, confirmed and "
            "unreadable ones left out) to one or more reviewers: the photo with zoom, the record and the model's "
            "distribution; answers by click or keyboard (0-5, M more than 5, U unsure, S skip, Z undo). Answers are "
            "committed to AUDIT_DIR/review.db (SQLite, WAL) with the reviewer and the time before the page moves on. "
            "Each bin is leased to one reviewer at a time. binsight review export AUDIT_DIR writes the counted answers "
            "as a labels CSV (file,expected_quantity,...) for `binsight data split` and `train`.",
            width=100,
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("target", nargs="+", metavar="[export] AUDIT_DIR", help="the folder `binsight audit` wrote")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1, this machine only)")
    parser.add_argument("--port", type=int, default=8765, help="TCP port (default 8765)")
    parser.add_argument(
        "--token", default=None, help="require this token (made up and printed when --host is not loopback)"
    )
    parser.add_argument("--lease-seconds", type=float, default=300, help="how long a bin stays with one reviewer (300)")
    parser.add_argument("--include-confirmed", action="store_true", help="queue confirmed bins too (spot checks)")
    parser.add_argument("--out", default=None, help="export: the labels CSV to write (default AUDIT_DIR/labels.csv)")
    parser.set_defaults(func=handler)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def handler(args: argparse.Namespace) -> int:
    from binsight.errors import BinsightError
    from binsight.review.store import ReviewStore

    export = args.target[0] == "export"
    rest = args.target[1:] if export else args.target
    if len(rest) != 1:
        raise BinsightError("usage: binsight review AUDIT_DIR [options] | binsight review export AUDIT_DIR [--out CSV]")
    audit_dir = Path(rest[0])
    if not (audit_dir / "audit.json").is_file():
        raise BinsightError(f"{audit_dir} has no audit.json: run `binsight audit SOURCE --out {audit_dir}` first")
    store = ReviewStore(audit_dir, lease_seconds=args.lease_seconds)
    if export:
        from binsight.review.export import export_labels

        result = export_labels(store, Path(args.out) if args.out else audit_dir / "labels.csv")
        print(
            f"{result['labels']} labels ({result['corrections']} differ from the record) written to {result['path']}; "
            f"not labels: {result['more']} more than 5, {result['unsure']} unsure",
            file=sys.stderr,
        )
        print(result["path"])
        return 0
    return serve(store, args)


def serve(store, args: argparse.Namespace) -> int:
    import secrets

    import uvicorn

    from binsight.review.app import create_app

    added = store.import_audit(include_confirmed=args.include_confirmed)
    token = args.token
    if not token and not is_loopback(args.host):
        token = secrets.token_urlsafe(18)
    progress = store.progress()
    url = f"http://{args.host}:{args.port}/" + (f"?token={token}" if token else "")
    print(f"review queue: {progress['total']} bins ({added} new), {progress['settled']} settled", file=sys.stderr)
    print(f"open {url}", file=sys.stderr, flush=True)
    uvicorn.run(create_app(store, token), host=args.host, port=args.port, log_level="warning")
    return 0
