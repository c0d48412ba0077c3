"""Every AWS call binsight makes goes through :class:`Api`: recorded with its parameters, ledgered when it
creates something, skipped in dry-run.

In dry-run no client is even built (no credentials or network needed): each call is recorded and answers a
:class:`Placeholder`, so a whole deploy can be planned and printed. Clients use botocore's ``standard``
retry mode (throttling and 5xx retried with backoff), and honour ``AWS_ENDPOINT_URL`` (how the tests point
them at moto's server on loopback).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from binsight.aws.errors import AwsCallError
from binsight.aws.ledger import Ledger, Resource

# Error codes that mean "already gone" for a delete: cleanup treats them as success (idempotent).
GONE_CODES = {
    "NoSuchEntity",
    "ResourceNotFoundException",
    "ResourceNotFound",
    "NotFoundException",
    "NoSuchBucket",
    "NoSuchKey",
    "ValidationException",  # SageMaker answers this for a name it does not know ("Could not find ...")
}


class Placeholder(str):
    """A dry-run answer: indexing it gives the path of the value the real call would return."""

    def __new__(cls, path: str) -> Placeholder:
        return super().__new__(cls, f"<{path}>")

    def __getitem__(self, key: Any) -> Any:  # type: ignore[override]
        if isinstance(key, str):
            return Placeholder(f"{str.__getitem__(self, slice(1, -1))}.{key}")
        return str.__getitem__(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        return self[key]


@dataclass
class Call:
    service: str
    operation: str
    params: dict[str, Any]
    creates: str = ""  # the kind of resource it creates, "" for reads and deletes

    def render(self) -> str:
        def plain(v: Any) -> Any:
            if isinstance(v, bytes | bytearray):
                return f"<{len(v)} bytes>"
            if isinstance(v, str) and v.startswith("{"):  # a policy document: shown as the JSON it is
                try:
                    return json.loads(v)
                except ValueError:
                    return v
            if isinstance(v, dict):
                return {k: plain(x) for k, x in v.items()}
            if isinstance(v, list | tuple):
                return [plain(x) for x in v]
            return v

        return f"{self.service}.{self.operation}({json.dumps(plain(self.params), indent=2, default=str)})"


@dataclass
class Api:
    """One region's clients, a ledger, and the record of every call.

    Args:
        region: the AWS region of every client.
        deployment: the deployment name created resources are ledgered under.
        ledger: where created resources are appended.
        dry_run: record calls only; return :class:`Placeholder` answers.
        session: a ``boto3.Session`` (default: a new one on the standard credential chain).
    """

    region: str
    deployment: str
    ledger: Ledger
    dry_run: bool = False
    session: Any = None
    calls: list[Call] = field(default_factory=list)
    _clients: dict[str, Any] = field(default_factory=dict)

    def boto_session(self):
        if self.session is None:
            import boto3

            self.session = boto3.Session(region_name=self.region)
        return self.session

    def client(self, service: str):
        if service not in self._clients:
            from botocore.config import Config

            config = Config(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=10, read_timeout=70)
            self._clients[service] = self.boto_session().client(service, region_name=self.region, config=config)
        return self._clients[service]

    def call(self, service: str, operation: str, **params: Any) -> Any:
        """Call ``service.operation(**params)`` (a read, or an update that creates nothing)."""
        self.calls.append(Call(service, operation, params))
        if self.dry_run:
            return Placeholder(operation)
        return self._invoke(service, operation, params)

    def create(
        self,
        service: str,
        operation: str,
        kind: str,
        name: str,
        arn: Callable[[Any], str] | None = None,
        extra: dict[str, Any] | None = None,
        **params: Any,
    ) -> Any:
        """Call a create operation and append the resource to the ledger as soon as it returned."""
        self.calls.append(Call(service, operation, params, creates=kind))
        if self.dry_run:
            return Placeholder(operation)
        response = self._invoke(service, operation, params)
        res = Resource(self.deployment, kind, name, self.region, arn(response) if arn else "", dict(extra or {}))
        self.ledger.created(res)
        return response

    def delete(self, res: Resource, service: str, operation: str, **params: Any) -> bool:
        """Delete ``res``; True when it was deleted now, False when it was already gone. Ledgered either way."""
        self.calls.append(Call(service, operation, params))
        if self.dry_run:
            return True
        try:
            self._invoke(service, operation, params)
            gone_before = False
        except AwsCallError as exc:
            if exc.code not in GONE_CODES or (exc.code == "ValidationException" and not _not_found(exc)):
                raise
            gone_before = True
        self.ledger.deleted(res)
        return not gone_before

    def _invoke(self, service: str, operation: str, params: dict[str, Any]) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(self.client(service), operation)(**params)
        except ClientError as exc:
            err = exc.response.get("Error", {})
            raise AwsCallError(
                f"{service}.{operation} failed: {err.get('Code', '?')}: {err.get('Message', exc)}",
                code=str(err.get("Code", "")),
            ) from None
        except BotoCoreError as exc:
            raise AwsCallError(f"{service}.{operation} failed: {exc}", code="") from None

    def wait(
        self,
        describe: Callable[[], dict[str, Any]],
        done: Callable[[dict[str, Any]], bool],
        *,
        interval: float = 15.0,
        timeout: float = 3 * 86400,
        on_poll: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Poll ``describe`` until ``done`` says so (``on_poll`` sees every answer)."""
        deadline = time.monotonic() + timeout
        while True:
            state = describe()
            if on_poll:
                on_poll(state)
            if done(state):
                return state
            if time.monotonic() > deadline:
                raise AwsCallError(f"gave up waiting after {timeout:.0f} s", code="Timeout")
            time.sleep(interval)


def _not_found(exc: AwsCallError) -> bool:
    text = str(exc).lower()
    return "could not find" in text or "does not exist" in text or "not found" in text
