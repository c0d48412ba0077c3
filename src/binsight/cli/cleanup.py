"""``binsight cleanup``: remove every endpoint, endpoint config and model, and stop their processes."""

from __future__ import annotations

import argparse
import json

from binsight.cli.endpoint import add_grace_period


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "cleanup",
        help="delete every endpoint, endpoint config and model record and stop their processes",
        description="The clean-up step: stop every endpoint's supervisor and model servers (SIGTERM, then "
        "SIGKILL after --grace-period), free their ports and remove all endpoint, endpoint config and model records "
        "from $BINSIGHT_HOME/endpoints.db, stale ones included. Prints what it removed; running it again "
        "removes nothing and exits 0. Logs under $BINSIGHT_HOME/endpoints/ are kept.",
    )
    add_grace_period(parser)
    parser.add_argument("--json", action="store_true", help="print what was removed as JSON")
    parser.set_defaults(func=handler)


def handler(args: argparse.Namespace) -> int:
    from binsight.endpoints.api import cleanup

    print_removed(cleanup(timeout=args.grace_period), args.json)
    return 0


def print_removed(removed: dict[str, list[str]], as_json: bool = False) -> None:
    """The clean-up report shared by ``binsight cleanup`` and ``binsight aws cleanup``: ``{kind: [names]}``
    as JSON, or one ``deleted <kind> <name>`` line per resource (``stopped …`` for processes and jobs)."""
    if as_json:
        print(json.dumps(removed, indent=2, sort_keys=True))
        return
    for kind, names in removed.items():
        if kind == "processes":
            continue
        verb = "stopped" if kind == "jobs" else "deleted"
        singular = (kind[:-3] + "y" if kind.endswith("ies") else kind[:-1]).replace("_", " ")
        for name in names:
            print(f"{verb} {singular} {name}")
    if removed.get("processes"):
        print(f"stopped processes {' '.join(map(str, removed['processes']))}")
    if not any(removed.values()):
        print("nothing to clean up")
