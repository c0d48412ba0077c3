"""The typed settings of one endpoint config: the model server's :class:`ServeConfig` plus what the supervisor
needs (start-up timeout, restart limit). Defaults live here once.

Stored in the registry's ``endpoint_configs.options`` column as one flat JSON object (serve keys next to
``startup_timeout`` and ``max_restarts``; the backend has its own column) and read back through the config
loader, so a stored config is validated like a YAML one. The supervisor writes :attr:`EndpointConfig.serve`
as YAML and starts ``binsight serve --config FILE``: every serve setting reaches the server.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from binsight.config.loader import ConfigError, from_dict, to_dict
from binsight.config.schemas import ServeConfig
from binsight.errors import BinsightError

DEFAULT_STARTUP_TIMEOUT_S = 120.0  # seconds a model server gets to answer /ping 200
DEFAULT_MAX_RESTARTS = 5  # failed restarts in a row before the supervisor gives up (0: never)
_OWN_KEYS = ("startup_timeout", "max_restarts")
_SUPERVISOR_KEYS = ("endpoint_name",)  # serve keys the supervisor sets per endpoint, never stored or --set


@dataclass
class EndpointConfig:
    """One endpoint config: how its model server runs and how it is supervised.

    Attributes:
        serve: The model server's settings (batching, limits, timeouts, backend); host and port are the
            endpoint's, not the server's (the supervisor hands it the endpoint's socket).
        startup_timeout: Seconds a new server gets to answer ``/ping`` 200 (and ``--wait`` waits).
        max_restarts: Restarts in a row that may fail before the endpoint becomes Failed; 0 = never give up.
    """

    serve: ServeConfig = field(default_factory=ServeConfig)
    startup_timeout: float = DEFAULT_STARTUP_TIMEOUT_S
    max_restarts: int = DEFAULT_MAX_RESTARTS

    def validate(self) -> None:
        if not self.startup_timeout > 0:
            raise ValueError("startup_timeout must be > 0 seconds")
        if isinstance(self.max_restarts, bool) or self.max_restarts < 0:
            raise ValueError(f"max_restarts must be a whole number >= 0 (0 = never give up), got {self.max_restarts!r}")

    def to_options(self) -> dict[str, Any]:
        """The flat JSON object stored in the registry (the backend is stored in its own column)."""
        serve = to_dict(self.serve)
        for key in ("backend", *_SUPERVISOR_KEYS):
            serve.pop(key)
        return {**serve, "startup_timeout": self.startup_timeout, "max_restarts": self.max_restarts}

    @classmethod
    def from_options(cls, options: dict[str, Any] | None, backend: str | None = None) -> EndpointConfig:
        """Read a stored ``options`` object (rows that name only a few keys get the defaults for the rest).

        Raises:
            BinsightError: a stored key or value is not valid.
        """
        options = dict(options or {})
        own = {k: options.pop(k) for k in _OWN_KEYS if k in options}
        if backend:
            options["backend"] = backend
        try:
            return from_dict(cls, {"serve": options, **own})
        except ConfigError as exc:
            raise BinsightError(f"bad endpoint config: {exc}") from None

    def replace(self, **changes: Any) -> EndpointConfig:
        """A copy with ``changes`` applied (``serve`` keys go to the server's settings), validated again.

        Raises:
            BinsightError: a changed value is not valid.
        """
        own = {k: v for k, v in changes.items() if k in _OWN_KEYS and v is not None}
        serve = {k: v for k, v in changes.items() if k not in _OWN_KEYS and v is not None}
        data = {**to_dict(self), **own, "serve": {**to_dict(self.serve), **serve}}
        try:
            return from_dict(EndpointConfig, data)
        except ConfigError as exc:
            raise BinsightError(str(exc).removeprefix("EndpointConfig: ")) from None


def serve_keys() -> tuple[str, ...]:
    """The names of the server settings an endpoint config carries."""
    return tuple(f.name for f in dataclasses.fields(ServeConfig) if f.name not in _SUPERVISOR_KEYS)
