"""The resource ledger: every resource binsight creates on AWS, appended as it is created.

A JSON-lines file (default ``$BINSIGHT_HOME/aws/ledger.jsonl``). Each create appends
``{"event": "created", "deployment", "kind", "name", "region", "arn", "time", …}`` right after the call
returned, and each delete appends ``{"event": "deleted", …}``; the live resources are the created ones not
deleted since. Appending one line per event keeps the file consistent when a deploy dies half-way: whatever
was created is already recorded, so ``binsight aws cleanup`` finishes it.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

TAG_KEY = "binsight:deployment"


@dataclass(frozen=True)
class Resource:
    """One AWS resource binsight created. ``kind`` is one of :data:`KINDS`; ``extra`` holds what deleting it
    needs beyond its name (the bucket of a notification, the role of a policy)."""

    deployment: str
    kind: str
    name: str
    region: str
    arn: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.region, self.kind, self.name)


# Every kind, in the order cleanup deletes them (dependents before what they depend on).
KINDS = (
    "s3_notification",
    "lambda_permission",
    "api",
    "function",
    "transform_job",
    "tuning_job",
    "training_job",
    "endpoint",
    "endpoint_config",
    "model",
    "role_policy",
    "role",
    "s3_prefix",
)


def tags(deployment: str) -> list[dict[str, str]]:
    """The tag list every created resource carries (SageMaker / IAM spelling)."""
    return [{"Key": TAG_KEY, "Value": deployment}]


def default_path() -> Path:
    home = os.environ.get("BINSIGHT_HOME") or Path.home() / ".local" / "state" / "binsight"
    return Path(home) / "aws" / "ledger.jsonl"


class Ledger:
    """Append-only JSON-lines record of created and deleted resources."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path else default_path()

    def _append(self, event: str, res: Resource) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps({"event": event, "time": time.time(), **asdict(res)}, sort_keys=True)
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def created(self, res: Resource) -> None:
        self._append("created", res)

    def deleted(self, res: Resource) -> None:
        self._append("deleted", res)

    def events(self) -> list[dict[str, Any]]:
        if not self.path.is_file():
            return []
        out = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue  # a line cut by a crash mid-write: everything before it is intact
        return out

    def live(self, deployment: str | None = None) -> list[Resource]:
        """Resources created and not deleted since, oldest first (optionally of one deployment)."""
        alive: dict[tuple[str, str, str], Resource] = {}
        for ev in self.events():
            res = Resource(**{k: ev[k] for k in ("deployment", "kind", "name", "region", "arn", "extra") if k in ev})
            if deployment is not None and res.deployment != deployment:
                continue
            if ev.get("event") == "created":
                alive[res.key] = res
            elif ev.get("event") == "deleted":
                alive.pop(res.key, None)
        return list(alive.values())

    def deployments(self) -> list[str]:
        return sorted({r.deployment for r in self.live()})
