"""Local real-time endpoints, the twin of SageMaker hosting: the code that starts and supervises model
server processes (the server itself is :mod:`binsight.serving`).

- :mod:`~binsight.endpoints.api` — the client API run by the CLI (create, list, describe, invoke, update,
  delete, cleanup);
- :mod:`~binsight.endpoints.config` — :class:`EndpointConfig`, the typed settings of one endpoint config;
- :mod:`~binsight.endpoints.store` — the SQLite registry of models, endpoint configs and endpoints;
- :mod:`~binsight.endpoints.supervisor` — the detached process per endpoint that owns its listening socket;
- :mod:`~binsight.endpoints.restarts`, :mod:`~binsight.endpoints.failures` — restart policy and failure wording;
- :mod:`~binsight.endpoints.procs` — process groups, ports, child environment and parent-death signal.
"""
