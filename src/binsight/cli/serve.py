"""``binsight serve``: the real-time HTTP model server (SageMaker hosting contract) for a trained model."""

from __future__ import annotations

import argparse
import os

from binsight.cli.common import add_config_args, load_stage_config
from binsight.inference.backends import backend_names


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser(
        "serve",
        help="serve a model over HTTP (SageMaker-compatible /ping and /invocations)",
        description="Serve a run or artifact on HTTP: GET /ping, POST /invocations, "
        "POST /endpoints/NAME/invocations (boto3 sagemaker-runtime), GET /metrics (Prometheus), GET /docs. "
        "Requests are decoded in a thread pool and batched dynamically for one inference worker. "
        "The server listens at once; /ping answers 503 until the model is loaded and a warm-up prediction "
        "succeeded. SIGTERM finishes in-flight requests, then exits 0. Every setting (limits and timeouts "
        "included, see docs/serving.md) can come from --config FILE or key=value.",
    )
    parser.add_argument("--model", required=True, help="run directory or artifact folder")
    parser.add_argument("--host", default=None, help="address to bind (default 127.0.0.1; 0.0.0.0 for all)")
    parser.add_argument("--port", type=int, default=None, help="TCP port (default 8080)")
    parser.add_argument(
        "--backend",
        choices=backend_names(),
        default=None,
        help="inference engine (default torch, in the precision `amp: auto` picks; torch-bf16/torch-fp32 fix it; "
        "onnx/onnx-int8 need `binsight export --format onnx [--int8]`)",
    )
    parser.add_argument(
        "--endpoint-name",
        default=None,
        metavar="NAME",
        help="answer POST /endpoints/NAME/invocations for this NAME only, other names get SageMaker's "
        "ValidationError (default: any name; `binsight endpoint` servers get their endpoint's name)",
    )
    parser.add_argument("--max-batch-size", type=int, default=None, help="largest dynamic batch (default 8)")
    parser.add_argument(
        "--max-wait-ms", type=float, default=None, help="longest wait for still-decoding requests to join a batch (5)"
    )
    parser.add_argument(
        "--queue-size", type=int, default=None, help="inputs allowed to wait; beyond it requests get 503 (64)"
    )
    parser.add_argument(
        "--workers-threads",
        "--threads",
        dest="threads",
        type=int,
        default=None,
        help="intra-op threads of the inference worker (default 0 = OMP_NUM_THREADS or all cores)",
    )
    parser.add_argument(
        "--decode-threads", type=int, default=None, help="threads decoding images (default 0 = min(4, cores))"
    )
    parser.add_argument("--request-timeout", type=float, default=None, help="seconds before a 504 (default 60)")
    parser.add_argument(
        "--capture", metavar="DIR", default=None, help="capture requests + responses into DIR (audit them)"
    )
    parser.add_argument("--capture-rate", type=float, default=None, help="share of requests captured (default 1.0)")
    parser.add_argument(
        "--fd",
        type=int,
        action="append",
        default=[],
        metavar="N",
        help="serve the inherited listening socket N instead of binding --host/--port (repeatable)",
    )
    parser.add_argument(
        "--join-fd",
        type=int,
        action="append",
        default=[],
        metavar="N",
        help="serve the inherited listening socket N once the process gets SIGUSR1 and the model is ready "
        "(repeatable; endpoint supervisors hand over the endpoint's port this way)",
    )
    add_config_args(parser)
    parser.set_defaults(func=handler)


def handler(args: argparse.Namespace) -> int:
    from binsight.config.schemas import ServeConfig
    from binsight.serving.faults import Faults
    from binsight.serving.process import run_server

    config = load_stage_config(
        ServeConfig,
        args,
        {
            "host": args.host,
            "port": args.port,
            "backend": args.backend,
            "endpoint_name": args.endpoint_name,
            "max_batch_size": args.max_batch_size,
            "max_wait_ms": args.max_wait_ms,
            "queue_size": args.queue_size,
            "threads": args.threads,
            "decode_threads": args.decode_threads,
            "request_timeout": args.request_timeout,
            "capture_dir": args.capture,
            "capture_rate": args.capture_rate,
        },
    )
    # Fault injection (the /_test/* routes) only when this process was started with it explicitly.
    faults = Faults() if os.environ.get("BINSIGHT_TEST_HOOKS") == "1" else None
    return run_server(args.model, config, faults=faults, fds=args.fd, join_fds=args.join_fd)
