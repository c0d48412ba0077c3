"""``binsight cleanup``: remove every endpoint, endpoint config and model, and stop their processes."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "cleanup",
        help="delete every endpoint, endpoint config and model record and stop their processes",
        description="The clean-up step: stop every endpoint's supervisor and model servers (SIGTERM, then "
        "SIGKILL after --timeout), free their ports and remove all endpoint, endpoint config and model records "
        "from $BINSIGHT_HOME/endpoints.db, stale ones included. Prints what it removed; running it again "
        "removes nothing and exits 0. Logs under $BINSIGHT_HOME/endpoints/ are kept.",
    )
    parser.add_argument("--timeout", type=float, default=20, help="seconds between SIGTERM and SIGKILL (default 20)")
    parser.add_argument("--json", action="store_true", help="print what was removed as JSON")
    parser.set_defaults(func=handler)


def handler(args: argparse.Namespace) -> int:
    from binsight.endpoints.api import cleanup

    removed = cleanup(timeout=args.timeout)
    if args.json:
        print(json.dumps(removed, indent=2, sort_keys=True))
        return 0
    for kind in ("endpoints", "endpoint_configs", "models"):
        for name in removed[kind]:
            print(f"deleted {kind[:-1].replace('_', ' ')} {name}")
    if removed["processes"]:
        print(f"stopped processes {' '.join(map(str, removed['processes']))}")
    if not any(removed.values()):
        print("nothing to clean up")
    return 0
