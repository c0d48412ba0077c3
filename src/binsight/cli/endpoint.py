"""``binsight endpoint``: create, list, describe, invoke, update and delete local real-time endpoints.

The local twin of SageMaker hosting's model / endpoint config / endpoint objects (see docs/endpoints.md).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

_CONTENT_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".json": "application/json"}


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "endpoint",
        help="manage local real-time endpoints (create | list | describe | invoke | update | delete)",
        description="Local endpoints like SageMaker hosting: each runs a supervisor process (detached) that keeps "
        "a `binsight serve` model server alive behind a stable port, restarts it when it dies, and swaps models "
        "without a failed request. State: $BINSIGHT_HOME/endpoints.db (default ~/.local/state/binsight).",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION")

    p = actions.add_parser("create", help="register a model and start an endpoint serving it")
    p.add_argument("name", help="endpoint name (letters, digits, hyphens)")
    p.add_argument("--model", required=True, help="run directory or artifact folder")
    p.add_argument("--port", type=int, default=None, help="the endpoint's port (default: a free port)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument(
        "--backend",
        choices=["torch", "torch-bf16", "torch-fp32", "onnx", "onnx-int8"],
        default="torch",
        help="inference engine",
    )
    p.add_argument("--max-batch-size", type=int, default=None, help="dynamic batching limit of the server")
    p.add_argument("--max-wait-ms", type=float, default=None, help="batching wait of the server")
    _add_max_restarts(p, 5)
    _add_wait(p)
    p.set_defaults(func=_quiet(create))

    p = actions.add_parser("list", help="table of endpoints: name, status, health, url, model, restarts, age")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=_quiet(list_))

    p = actions.add_parser("describe", help="every field of an endpoint as JSON, with a live /ping")
    p.add_argument("name")
    p.set_defaults(func=_quiet(describe))

    p = actions.add_parser("invoke", help="send an image to an endpoint and print the prediction JSON")
    p.add_argument("name")
    p.add_argument("image", help="image file (JPEG/PNG), or a JSON request body")
    p.add_argument("--expected-quantity", type=int, default=None, help="adds the inventory check to the answer")
    p.add_argument("--content-type", default=None, help="default: from the file suffix (image/jpeg, image/png …)")
    p.set_defaults(func=_quiet(invoke))

    p = actions.add_parser("update", help="swap the endpoint's model with no failed request")
    p.add_argument("name")
    p.add_argument("--model", required=True, help="run directory or artifact folder of the new model")
    p.add_argument(
        "--backend",
        choices=["torch", "torch-bf16", "torch-fp32", "onnx", "onnx-int8"],
        default=None,
        help="default: unchanged",
    )
    _add_max_restarts(p, None)
    _add_wait(p)
    p.set_defaults(func=_quiet(update))

    p = actions.add_parser("delete", help="stop an endpoint and remove its endpoint, config and model records")
    p.add_argument("name")
    p.add_argument("--timeout", type=float, default=20, help="seconds between SIGTERM and SIGKILL (default 20)")
    p.set_defaults(func=_quiet(delete))

    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])


def _quiet(handler):
    """Wrap a handler so httpx's per-request INFO lines stay out of the command's output."""

    def run(args: argparse.Namespace) -> int:
        _quiet_http_logs()
        return handler(args)

    return run


def _add_max_restarts(p: argparse.ArgumentParser, default: int | None) -> None:
    p.add_argument(
        "--max-restarts",
        type=int,
        default=default,
        metavar="N",
        help="when the model server dies it is restarted (backoff 0.5 s, 1 s, 2 s … 30 s); after N restarts in a "
        "row that fail (the server does not start, or dies within 60 s of becoming healthy) the endpoint becomes "
        "Failed, with the count and last reason, and stops serving; 0 = restart for ever "
        f"({'default: unchanged' if default is None else f'default {default}'})",
    )


def _add_wait(p: argparse.ArgumentParser) -> None:
    p.add_argument("--wait", action=argparse.BooleanOptionalAction, default=True, help="wait until InService (default)")
    p.add_argument("--timeout", type=float, default=120, help="seconds the model server gets to start (120)")


def _quiet_http_logs() -> None:
    import logging

    logging.getLogger("httpx").setLevel(logging.WARNING)


def _print_json(data: object) -> None:
    print(json.dumps(data, indent=2, sort_keys=True, default=str))


def create(args: argparse.Namespace) -> int:
    from binsight.serving.endpoints import create_endpoint

    info = create_endpoint(
        args.name,
        args.model,
        backend=args.backend,
        port=args.port,
        wait=args.wait,
        timeout=args.timeout,
        host=args.host,
        max_batch_size=args.max_batch_size,
        max_wait_ms=args.max_wait_ms,
        max_restarts=args.max_restarts,
    )
    print(f"endpoint {info['name']}: {info['status']} at {info['url']}", file=sys.stderr)
    print(info["url"])
    return 0


def format_age(seconds: float) -> str:
    """``42s``, ``5m``, ``3h``, ``2d``."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(max(seconds, 0))}s"


def format_table(rows: list[dict]) -> str:
    """The ``endpoint list`` table."""
    header = ["NAME", "STATUS", "HEALTH", "URL", "MODEL", "RESTARTS", "AGE"]
    now = time.time()
    body = [
        [
            r["name"],
            r["status"],
            r["health"],
            r["url"],
            ":".join(x for x in (r.get("artifact_name"), r.get("artifact_version")) if x) or "-",
            str(r["restarts"]),
            format_age(now - r["created_at"]),
        ]
        for r in rows
    ]
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in [header, *body]]
    return "\n".join(line.rstrip() for line in lines)


def list_(args: argparse.Namespace) -> int:
    from binsight.serving.endpoints import list_endpoints

    rows = list_endpoints()
    if args.json:
        _print_json(rows)
    elif rows:
        print(format_table(rows))
    else:
        print("no endpoints", file=sys.stderr)
    return 0


def describe(args: argparse.Namespace) -> int:
    from binsight.serving.endpoints import describe_endpoint

    _print_json(describe_endpoint(args.name))
    return 0


def invoke(args: argparse.Namespace) -> int:
    from binsight.errors import BinsightError
    from binsight.serving.endpoints import invoke_endpoint

    path = Path(args.image)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BinsightError(f"cannot read {path}: {exc.strerror or exc}") from None
    content_type = args.content_type or _CONTENT_TYPES.get(path.suffix.lower(), "application/x-image")
    _print_json(invoke_endpoint(args.name, data, content_type=content_type, expected_quantity=args.expected_quantity))
    return 0


def update(args: argparse.Namespace) -> int:
    from binsight.serving.endpoints import update_endpoint

    info = update_endpoint(
        args.name,
        args.model,
        backend=args.backend,
        wait=args.wait,
        timeout=args.timeout,
        max_restarts=args.max_restarts,
    )
    config = info["pending_config"] or info["config_name"]
    verb = "switching to" if info["pending_config"] else "with"
    print(f"endpoint {info['name']}: {info['status']} {verb} {config} at {info['url']}", file=sys.stderr)
    print(info["url"])
    return 0


def delete(args: argparse.Namespace) -> int:
    from binsight.serving.endpoints import delete_endpoint

    removed = delete_endpoint(args.name, timeout=args.timeout)
    for kind in ("endpoints", "endpoint_configs", "models"):
        for name in removed[kind]:
            print(f"deleted {kind[:-1].replace('_', ' ')} {name}")
    return 0
