"""``binsight endpoint``: create, list, describe, invoke, update and delete local real-time endpoints.

The local twin of SageMaker hosting's model / endpoint config / endpoint objects (see docs/endpoints.md).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from binsight.cli.common import add_hidden_alias
from binsight.endpoints.config import DEFAULT_MAX_RESTARTS, DEFAULT_STARTUP_TIMEOUT_S
from binsight.inference.backends import backend_names

_CONTENT_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".json": "application/json"}


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser(
        "endpoint",
        help="manage local real-time endpoints (create | list | describe | invoke | update | delete)",
        description="Local endpoints like SageMaker hosting: each runs a supervisor process (detached) that owns "
        "the endpoint's port and hands it to a `binsight serve` model server, restarts the server when it dies, "
        "and swaps models without a failed request. State: $BINSIGHT_HOME/endpoints.db (default "
        "~/.local/state/binsight).",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION")

    p = actions.add_parser("create", help="register a model and start an endpoint serving it")
    p.add_argument("name", help="endpoint name (letters, digits, hyphens)")
    p.add_argument("--model", required=True, help="run directory or artifact folder")
    p.add_argument("--port", type=int, default=None, help="the endpoint's port (default: a free port)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--backend", choices=backend_names(), default=None, help="inference engine (default torch)")
    p.add_argument("--max-batch-size", type=int, default=None, help="dynamic batching limit of the server")
    p.add_argument("--max-wait-ms", type=float, default=None, help="batching wait of the server")
    _add_max_restarts(p, DEFAULT_MAX_RESTARTS)
    _add_wait(p, f"{DEFAULT_STARTUP_TIMEOUT_S:g}")
    _add_serve_config(p)
    p.set_defaults(func=_quiet(create))

    p = actions.add_parser("list", help="table of endpoints: name, status, health, url, model, restarts, age")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table (times as ISO 8601 UTC)")
    p.set_defaults(func=_quiet(list_))

    p = actions.add_parser(
        "describe", help="every field of an endpoint as JSON (times as ISO 8601 UTC), with a live /ping"
    )
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
    p.add_argument("--backend", choices=backend_names(), default=None, help="default: unchanged")
    _add_max_restarts(p, None)
    _add_wait(p, "unchanged")
    _add_serve_config(p)
    p.set_defaults(func=_quiet(update))

    p = actions.add_parser("delete", help="stop an endpoint and remove its endpoint, config and model records")
    p.add_argument("name")
    add_grace_period(p)
    p.set_defaults(func=_quiet(delete))

    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])


def _quiet(handler: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Wrap a handler so httpx's per-request INFO lines stay out of the command's output."""

    def run(args: argparse.Namespace) -> int:
        _quiet_http_logs()
        return handler(args)

    return run


def _add_max_restarts(p: argparse.ArgumentParser, default: int | None) -> None:
    p.add_argument(
        "--max-restarts",
        type=int,
        default=None,
        metavar="N",
        help="when the model server dies it is restarted (backoff 0.5 s, 1 s, 2 s … 30 s); after N restarts in a "
        "row that fail (the server does not start, or dies within 60 s of becoming healthy) the endpoint becomes "
        "Failed, with the count and last reason, and stops serving; 0 = restart for ever "
        f"({'default: unchanged' if default is None else f'default {default}'})",
    )


def _add_wait(p: argparse.ArgumentParser, default: str) -> None:
    p.add_argument(
        "--wait",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="wait until InService, showing progress on stderr (default; BINSIGHT_NO_PROGRESS=1 hides it)",
    )
    p.add_argument(
        "--startup-timeout",
        dest="startup_timeout",
        type=float,
        default=None,
        metavar="S",
        help=f"seconds the model server gets to answer /ping 200 (default {default})",
    )
    add_hidden_alias(p, "--timeout", "startup_timeout", float)


def add_grace_period(p: argparse.ArgumentParser) -> None:
    """``--grace-period S`` (old spelling ``--timeout``): seconds between SIGTERM and SIGKILL."""
    p.add_argument(
        "--grace-period",
        dest="grace_period",
        type=float,
        default=20,
        metavar="S",
        help="seconds processes get to finish after SIGTERM before SIGKILL (default 20)",
    )
    add_hidden_alias(p, "--timeout", "grace_period", float)


def _add_serve_config(p: argparse.ArgumentParser) -> None:
    """``--config FILE`` and ``--set key=value``: any `binsight serve` setting (limits, timeouts …)."""
    p.add_argument(
        "--config", type=Path, default=None, help="the model server's settings: a `binsight serve` YAML file"
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="one `binsight serve` setting, e.g. --set body_timeout=10 (repeatable; see docs/serving.md)",
    )


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    """The serve settings given by --config, flags and key=value (flags over the file, key=value over both)."""
    from binsight.config.loader import apply_overrides, read_yaml

    data: dict[str, Any] = read_yaml(args.config) if args.config else {}
    flags = {
        "backend": args.backend,
        "max_batch_size": getattr(args, "max_batch_size", None),
        "max_wait_ms": getattr(args, "max_wait_ms", None),
    }
    data.update({k: v for k, v in flags.items() if v is not None})
    data = apply_overrides(data, args.overrides)
    for key in ("host", "port"):  # the endpoint's address is --host/--port, not the server's
        data.pop(key, None)
    return data


def _quiet_http_logs() -> None:
    import logging

    logging.getLogger("httpx").setLevel(logging.WARNING)


def iso_time(epoch: float) -> str:
    """``1795936323.4`` → ``"2026-11-29T07:12:03Z"`` (UTC, whole seconds)."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def with_iso_times(row: dict[str, Any]) -> dict[str, Any]:
    """The row with its epoch ``*_at`` fields as ISO 8601 UTC strings."""
    return {k: iso_time(v) if k.endswith("_at") and isinstance(v, int | float) else v for k, v in row.items()}


def _print_json(data: object) -> None:
    print(json.dumps(data, indent=2, sort_keys=True, default=str))


class WaitProgress:
    """Shows a wait for an endpoint on stderr: a live status line on a terminal (tqdm), otherwise a line at
    once and then every ``every`` seconds; nothing with ``BINSIGHT_NO_PROGRESS=1``."""

    def __init__(self, name: str, every: float = 10.0) -> None:
        self.name = name
        self.every = every
        self.quiet = os.environ.get("BINSIGHT_NO_PROGRESS") == "1"
        self.last_line = -every
        self.bar: Any = None
        if not self.quiet and sys.stderr.isatty():
            from binsight.utils.progress import progress

            self.bar = progress(total=None, bar_format="{desc} {elapsed}", desc=f"endpoint {name}: starting")

    def __call__(self, status: str, waited: float) -> None:
        if self.quiet:
            return
        if self.bar is not None:
            self.bar.set_description_str(f"endpoint {self.name}: {status}")
            self.bar.update(0)
        elif waited - self.last_line >= self.every:
            self.last_line = waited
            print(f"endpoint {self.name}: {status} ({waited:.0f} s)", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def create(args: argparse.Namespace) -> int:
    from binsight.endpoints.api import create_endpoint

    shown = WaitProgress(args.name)
    try:
        info = create_endpoint(
            args.name,
            args.model,
            port=args.port,
            host=args.host,
            wait=args.wait,
            timeout=args.startup_timeout,
            on_wait=shown,
            **{"max_restarts": args.max_restarts, **_settings(args)},
        )
    finally:
        shown.close()
    print(f"endpoint {info['name']}: {info['status']} at {info['url']}", file=sys.stderr)
    print(info["url"])
    return 0


def format_age(seconds: float) -> str:
    """``42s``, ``5m``, ``3h``, ``2d``."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(max(seconds, 0))}s"


def format_table(rows: list[dict[str, Any]]) -> str:
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
    from binsight.endpoints.api import list_endpoints

    rows = list_endpoints()
    if args.json:
        _print_json([with_iso_times(row) for row in rows])
    elif rows:
        print(format_table(rows))
    else:
        print("no endpoints", file=sys.stderr)
    return 0


def describe(args: argparse.Namespace) -> int:
    from binsight.endpoints.api import describe_endpoint

    _print_json(with_iso_times(describe_endpoint(args.name)))
    return 0


def invoke(args: argparse.Namespace) -> int:
    from binsight.endpoints.api import invoke_endpoint
    from binsight.errors import BinsightError

    path = Path(args.image)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BinsightError(f"cannot read {path}: {exc.strerror or exc}") from None
    content_type = args.content_type or _CONTENT_TYPES.get(path.suffix.lower(), "application/x-image")
    _print_json(invoke_endpoint(args.name, data, content_type=content_type, expected_quantity=args.expected_quantity))
    return 0


def update(args: argparse.Namespace) -> int:
    from binsight.endpoints.api import update_endpoint

    settings = {"max_restarts": args.max_restarts, **_settings(args)}
    shown = WaitProgress(args.name)
    try:
        info = update_endpoint(
            args.name, args.model, wait=args.wait, timeout=args.startup_timeout, on_wait=shown, **settings
        )
    finally:
        shown.close()
    config = info["pending_config"] or info["config_name"]
    verb = "switching to" if info["pending_config"] else "with"
    print(f"endpoint {info['name']}: {info['status']} {verb} {config} at {info['url']}", file=sys.stderr)
    print(info["url"])
    return 0


def delete(args: argparse.Namespace) -> int:
    from binsight.endpoints.api import delete_endpoint

    removed = delete_endpoint(args.name, timeout=args.grace_period)
    for kind in ("endpoints", "endpoint_configs", "models"):
        for name in removed[kind]:
            print(f"deleted {kind[:-1].replace('_', ' ')} {name}")
    return 0
