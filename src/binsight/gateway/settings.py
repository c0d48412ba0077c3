"""Gateway settings read from environment variables (the way a Lambda function is configured).

Fetch safety (``FetchPolicy``) and the endpoint to call (``PredictionEndpoint``) are plain frozen dataclasses:
the handler builds them once per invocation from ``os.environ``; tests and the local front build them
directly.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from binsight.gateway.errors import Misconfigured

MB = 1024 * 1024
DEFAULT_MAX_BYTES = 6 * MB
DEFAULT_MAX_PIXELS = 40_000_000

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class FetchPolicy:
    """What the gateway may fetch and how much.

    Attributes:
        max_bytes: cap on any image body (URL, S3 object or inline), enforced while streaming.
        max_pixels: cap on ``width * height`` read from the image header before any pixel is decoded.
        max_redirects: HTTP redirects followed per URL; every hop is checked again.
        connect_timeout: seconds to open a connection to an image URL.
        read_timeout: seconds to wait for each read from an image URL.
        total_timeout: seconds for a whole URL fetch, redirects included (stops slow trickling servers).
        allow_private: allow loopback/private/link-local/CGNAT addresses (never cloud metadata).
        allow_names: host names (lower case) whose addresses are allowed whatever they are, except metadata.
        allow_networks: IP addresses/networks allowed explicitly; the only way to allow a metadata address.
    """

    max_bytes: int = DEFAULT_MAX_BYTES
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_redirects: int = 3
    connect_timeout: float = 5.0
    read_timeout: float = 10.0
    total_timeout: float = 30.0
    allow_private: bool = False
    allow_names: frozenset[str] = frozenset()
    allow_networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def with_allowed(cls, hosts: list[str] | tuple[str, ...] = (), **kwargs: Any) -> FetchPolicy:
        """Build a policy allowing ``hosts`` (names, IP addresses or CIDR networks) on top of ``kwargs``."""
        names, networks = split_allow_hosts(hosts)
        return cls(allow_names=names, allow_networks=networks, **kwargs)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> FetchPolicy:
        """Read ``BINSIGHT_GATEWAY_*`` variables (see docs/gateway.md)."""
        hosts = [h for h in env.get("BINSIGHT_GATEWAY_ALLOW_HOSTS", "").replace(",", " ").split() if h]
        return cls.with_allowed(
            hosts,
            max_bytes=_int(env, "BINSIGHT_GATEWAY_MAX_BYTES", DEFAULT_MAX_BYTES, low=1),
            max_pixels=_int(env, "BINSIGHT_GATEWAY_MAX_PIXELS", DEFAULT_MAX_PIXELS, low=1),
            max_redirects=_int(env, "BINSIGHT_GATEWAY_MAX_REDIRECTS", 3, low=0),
            connect_timeout=_float(env, "BINSIGHT_GATEWAY_CONNECT_TIMEOUT", 5.0),
            read_timeout=_float(env, "BINSIGHT_GATEWAY_READ_TIMEOUT", 10.0),
            total_timeout=_float(env, "BINSIGHT_GATEWAY_FETCH_TIMEOUT", 30.0),
            allow_private=_bool(env, "BINSIGHT_GATEWAY_ALLOW_PRIVATE"),
        )


@dataclass(frozen=True)
class PredictionEndpoint:
    """Which endpoint answers predictions.

    Exactly one of ``url`` (a binsight / SageMaker-compatible HTTP endpoint) or ``sagemaker_endpoint``
    (a SageMaker endpoint name called through boto3 ``sagemaker-runtime``) must be set.
    """

    url: str | None = None
    sagemaker_endpoint: str | None = None
    sagemaker_endpoint_url: str | None = None
    region: str | None = None
    timeout: float = 30.0
    retries: int = 3
    backoff: float = 0.2

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> PredictionEndpoint:
        """Read ``BINSIGHT_ENDPOINT_URL`` / ``BINSIGHT_SAGEMAKER_ENDPOINT`` and the retry settings."""
        return cls(
            url=env.get("BINSIGHT_ENDPOINT_URL") or None,
            sagemaker_endpoint=env.get("BINSIGHT_SAGEMAKER_ENDPOINT") or None,
            sagemaker_endpoint_url=env.get("BINSIGHT_SAGEMAKER_ENDPOINT_URL") or None,
            region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None,
            timeout=_float(env, "BINSIGHT_ENDPOINT_TIMEOUT", 30.0),
            retries=_int(env, "BINSIGHT_ENDPOINT_RETRIES", 3, low=0),
            backoff=_float(env, "BINSIGHT_ENDPOINT_BACKOFF", 0.2, low=0.0),
        )


@dataclass(frozen=True)
class GatewaySettings:
    """Everything one invocation needs besides the event.

    Attributes:
        raise_on_retryable: for an asynchronous event (an S3 notification) with a retryable failure, raise
            ``RetryableGatewayError`` so that Lambda retries the event, instead of returning the result.
    """

    policy: FetchPolicy = field(default_factory=FetchPolicy)
    endpoint: PredictionEndpoint = field(default_factory=PredictionEndpoint)
    s3_endpoint_url: str | None = None
    raise_on_retryable: bool = True

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> GatewaySettings:
        """Read all gateway settings from environment variables."""
        return cls(
            policy=FetchPolicy.from_env(env),
            endpoint=PredictionEndpoint.from_env(env),
            s3_endpoint_url=env.get("BINSIGHT_S3_ENDPOINT_URL") or env.get("AWS_ENDPOINT_URL_S3") or None,
            raise_on_retryable=_switch(env, "BINSIGHT_GATEWAY_RAISE_ON_RETRYABLE", default=True),
        )


def split_allow_hosts(hosts: list[str] | tuple[str, ...]) -> tuple[frozenset[str], tuple[IPNetwork, ...]]:
    """Split allow entries into host names and IP networks (``127.0.0.1``, ``10.0.0.0/8``, ``::1``)."""
    names: set[str] = set()
    networks: list[IPNetwork] = []
    for raw in hosts:
        entry = raw.strip().strip("[]")
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            names.add(entry.lower().rstrip("."))
    return frozenset(names), tuple(networks)


def _int(env: Mapping[str, str], name: str, default: int, low: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise Misconfigured(f"{name}={raw!r} is not an integer") from None
    if value < low:
        raise Misconfigured(f"{name}={value} must be at least {low}")
    return value


def _float(env: Mapping[str, str], name: str, default: float, low: float = 0.001) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise Misconfigured(f"{name}={raw!r} is not a number of seconds") from None
    if not value >= low:
        raise Misconfigured(f"{name}={value} must be at least {low}")
    return value


def _bool(env: Mapping[str, str], name: str) -> bool:
    return env.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def _switch(env: Mapping[str, str], name: str, *, default: bool) -> bool:
    """An on/off variable that refuses anything else (a typo must not silently flip a default-on switch)."""
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    raise Misconfigured(f"{name}={env[name]!r} must be one of 1/0, true/false, yes/no, on/off")
