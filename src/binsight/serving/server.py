"""Run the endpoint under uvicorn: logging, graceful shutdown on SIGTERM, exit code on a failed load.

The server listens at once and loads the model in the background (``/ping`` is 503 until a warm-up
prediction succeeded). On SIGTERM or SIGINT it stops accepting connections, lets in-flight requests finish
(up to the request timeout), drains the batcher and exits 0. If the model cannot be loaded it exits 1.
"""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path

from binsight.config.schemas import ServeConfig
from binsight.errors import BinsightError

log = logging.getLogger("binsight.serving")


def configure_access_log(stream=None) -> None:
    """Send ``binsight.access`` records to ``stream`` (stderr) as bare JSON lines, one per request."""
    logger = logging.getLogger("binsight.access")
    if any(getattr(h, "_binsight_access", False) for h in logger.handlers):
        return
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler._binsight_access = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def check_model(model_path: str | Path, backend: str) -> Path:
    """Fail fast (before listening) when the artifact or the backend's model file is missing.

    Returns:
        The artifact folder.

    Raises:
        BinsightError: no artifact there, or no ONNX file for an ONNX backend.
    """
    from binsight.inference.artifact import read_meta, resolve_artifact_dir
    from binsight.inference.onnx_backend import onnx_file_for

    folder = resolve_artifact_dir(model_path)
    read_meta(folder)
    if backend.startswith("onnx"):
        onnx_file_for(folder, backend)
    return folder


def run_server(model_path: str | Path, config: ServeConfig, test_hooks: bool | None = None) -> int:
    """Serve ``model_path`` until SIGTERM/SIGINT; returns the process exit code.

    Args:
        model_path: Run directory or artifact folder.
        config: Host, port, backend, batching and limits.
        test_hooks: Enable ``/_test/*`` routes (default: ``BINSIGHT_TEST_HOOKS=1``).
    """
    import uvicorn

    from binsight.serving.app import create_app

    check_model(model_path, config.backend)
    configure_access_log()
    # One process serves one model: drop the *_created series, which only double the /metrics text.
    import prometheus_client

    prometheus_client.disable_created_metrics()
    exit_code = 0
    server: uvicorn.Server | None = None

    def on_fatal(message: str) -> None:
        nonlocal exit_code
        exit_code = 1
        if server is not None:
            server.should_exit = True

    app = create_app(model_path, config, test_hooks=test_hooks, on_fatal=on_fatal)
    uv_config = uvicorn.Config(
        app,
        host=config.host,
        port=config.port,
        log_config=None,
        access_log=False,  # our middleware writes one JSON line per request instead
        lifespan="on",
        timeout_graceful_shutdown=int(config.request_timeout) + 5,
        timeout_keep_alive=75,  # above the 60 s idle timeout of typical load balancers
        server_header=False,
    )
    server = uvicorn.Server(uv_config)
    # uvicorn re-raises the signal after its graceful shutdown; a Python-level handler turns that into a
    # clean exit 0 instead of death by SIGTERM.
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: None)
    try:
        log.info(
            "serving %s on http://%s:%d (backend %s, max batch %d, max wait %g ms, queue %d)",
            model_path,
            config.host,
            config.port,
            config.backend,
            config.max_batch_size,
            config.max_wait_ms,
            config.queue_size,
        )
        server.run()
    finally:
        signal.signal(signal.SIGTERM, previous)
    if not server.started and exit_code == 0:
        raise BinsightError(f"could not listen on {config.host}:{config.port} (is the port already in use?)")
    return exit_code
