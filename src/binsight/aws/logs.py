"""Waiting on a job: a live status line on stderr and its CloudWatch log lines as they arrive."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

from binsight.aws.api import Api
from binsight.aws.errors import AwsCallError


class LogTail:
    """Follow every stream of ``group`` whose name starts with ``prefix`` (SageMaker writes one per host,
    ``JOB/algo-1-…``), printing new lines once each."""

    def __init__(self, api: Api, group: str, prefix: str, out=None) -> None:
        self.api, self.group, self.prefix = api, group, prefix
        self.out = out or sys.stdout
        self.tokens: dict[str, str | None] = {}

    def poll(self) -> int:
        """Print the lines that arrived since the last poll; returns how many."""
        if self.api.dry_run:
            return 0
        try:
            streams = self.api.call(
                "logs", "describe_log_streams", logGroupName=self.group, logStreamNamePrefix=self.prefix
            ).get("logStreams", [])
        except AwsCallError as exc:
            if exc.code == "ResourceNotFoundException":  # the group appears with the first log line
                return 0
            raise
        printed = 0
        for stream in sorted(s["logStreamName"] for s in streams):
            params: dict[str, Any] = {"logGroupName": self.group, "logStreamName": stream, "startFromHead": True}
            while True:
                if self.tokens.get(stream):
                    params["nextToken"] = self.tokens[stream]
                page = self.api.call("logs", "get_log_events", **params)
                for event in page.get("events", []):
                    host = stream.rsplit("/", 1)[-1]
                    print(f"[{host}] {event['message'].rstrip()}", file=self.out, flush=True)
                    printed += 1
                token = page.get("nextForwardToken")
                if not token or token == self.tokens.get(stream):
                    self.tokens[stream] = token
                    break
                self.tokens[stream] = token
        return printed


class StatusLine:
    """One status line on stderr, rewritten in place on a terminal, printed on change otherwise."""

    def __init__(self, label: str, stream=None) -> None:
        self.label, self.stream = label, stream or sys.stderr
        self.start = time.monotonic()
        self.last = ""

    def show(self, text: str) -> None:
        elapsed = int(time.monotonic() - self.start)
        line = f"{self.label}: {text}"
        if self.stream.isatty():
            print(f"\r\033[K{line}  [{elapsed // 60}m{elapsed % 60:02d}s]", end="", file=self.stream, flush=True)
        elif line != self.last:
            print(line, file=self.stream, flush=True)
        self.last = line

    def done(self) -> None:
        if self.stream.isatty():
            print(file=self.stream)


def follow_job(
    api: Api,
    label: str,
    describe: Callable[[], dict[str, Any]],
    status_key: str,
    terminal: tuple[str, ...],
    *,
    detail_key: str = "",
    log_prefix: str,
    log_group: str | None,
    interval: float,
) -> dict[str, Any]:
    """Wait until ``describe()[status_key]`` is in ``terminal``, showing it (and ``detail_key``'s value) on a live
    status line and, unless ``log_group`` is None, the job's CloudWatch log streams under ``log_prefix``.
    Returns the last describe."""
    status = StatusLine(label)
    tail = LogTail(api, log_group, log_prefix) if log_group else None

    def poll(desc: dict[str, Any]) -> None:
        if tail:
            tail.poll()
        status.show(f"{desc.get(status_key)}" + (f" / {desc.get(detail_key, '')}" if detail_key else ""))

    desc = api.wait(describe, lambda d: d.get(status_key) in terminal, interval=interval, on_poll=poll)
    status.done()
    return desc
