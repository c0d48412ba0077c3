"""``binsight gateway``: the Lambda event gateway — serve it locally, package it, invoke it on an event."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from binsight.gateway.settings import GatewaySettings

# sysexits.h EX_TEMPFAIL: "try again later", distinct from a permanent failure (1).
EXIT_RETRYABLE = 75


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "gateway",
        help="the Lambda event gateway: local HTTP front, Lambda zip, one-off invocations",
        description="The AWS Lambda handler binsight.gateway.handler.lambda_handler, which takes URL, s3://, "
        "inline-image, API Gateway and S3 events, fetches the image safely and asks an endpoint for the "
        "prediction. See docs/gateway.md.",
    )
    gw_sub = parser.add_subparsers(dest="gateway_command", metavar="SUBCOMMAND", required=True)

    serve = gw_sub.add_parser(
        "serve",
        help="expose the handler over HTTP like API Gateway (POST /predict)",
        description="Run the handler behind a local HTTP server: POST /predict with JSON "
        '({"url"|"s3_uri"|"image_b64", "expected_quantity"}) or a raw image body.',
    )
    serve.add_argument("--port", type=int, default=9000, help="port to listen on (default 9000)")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    _add_endpoint_args(serve)
    serve.set_defaults(func=_serve)

    package = gw_sub.add_parser(
        "package",
        help="build the AWS Lambda deployment zip",
        description="Zip binsight/gateway (+ Pillow for the Lambda platform unless --no-deps). "
        "Lambda handler: binsight.gateway.handler.lambda_handler.",
    )
    package.add_argument("--out", type=Path, required=True, help="zip file to write, e.g. dist/gateway.zip")
    package.add_argument(
        "--no-deps", action="store_true", help="only the gateway code (Pillow from a layer; boto3 is in Lambda)"
    )
    package.add_argument("--platform", default="manylinux2014_x86_64", help="pip platform tag of the Lambda arch")
    package.add_argument("--python-version", default="3.11", help="the Lambda runtime's Python (default 3.11)")
    package.set_defaults(func=_package)

    invoke = gw_sub.add_parser(
        "invoke",
        help="run the handler once on an event JSON file and print the response",
        description="Call lambda_handler on EVENT (a JSON file, or - for stdin) with the same settings as "
        "serve, and print the response JSON. Exit 0 when statusCode is 200, 1 otherwise, and "
        f"{EXIT_RETRYABLE} when an S3 event had a retryable failure (Lambda would retry it: run it again later).",
    )
    invoke.add_argument("event", help="event JSON file, or - for stdin")
    _add_endpoint_args(invoke)
    invoke.set_defaults(func=_invoke)


def _add_endpoint_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--endpoint", metavar="URL", help="HTTP endpoint base URL (else $BINSIGHT_ENDPOINT_URL)")
    parser.add_argument(
        "--sagemaker-endpoint", metavar="NAME", help="SageMaker endpoint name (else $BINSIGHT_SAGEMAKER_ENDPOINT)"
    )
    parser.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="HOST",
        help="host name, IP or CIDR the URL fetcher may contact although private (repeatable)",
    )
    parser.add_argument("--max-bytes", type=int, help="image byte cap (default 6 MB)")
    parser.add_argument("--timeout", type=float, help="endpoint timeout in seconds (default 30)")
    parser.add_argument("--retries", type=int, help="endpoint retries on 503/429 (default 3)")


def _settings(args: argparse.Namespace) -> GatewaySettings:
    import dataclasses
    import os

    from binsight.errors import BinsightError
    from binsight.gateway.errors import GatewayError
    from binsight.gateway.settings import GatewaySettings, split_allow_hosts

    try:
        settings = GatewaySettings.from_env(os.environ)
    except GatewayError as exc:
        raise BinsightError(exc.message) from None
    endpoint, policy = settings.endpoint, settings.policy
    if args.endpoint:
        endpoint = dataclasses.replace(endpoint, url=args.endpoint, sagemaker_endpoint=None)
    if args.sagemaker_endpoint:
        endpoint = dataclasses.replace(endpoint, sagemaker_endpoint=args.sagemaker_endpoint, url=None)
    if args.timeout is not None:
        endpoint = dataclasses.replace(endpoint, timeout=args.timeout)
    if args.retries is not None:
        endpoint = dataclasses.replace(endpoint, retries=args.retries)
    if args.allow_host:
        names, networks = split_allow_hosts(args.allow_host)
        policy = dataclasses.replace(
            policy, allow_names=policy.allow_names | names, allow_networks=policy.allow_networks + networks
        )
    if args.max_bytes is not None:
        policy = dataclasses.replace(policy, max_bytes=args.max_bytes)
    if not endpoint.url and not endpoint.sagemaker_endpoint:
        raise BinsightError(
            "no endpoint: pass --endpoint URL (e.g. http://127.0.0.1:8080 from `binsight serve`) or "
            "--sagemaker-endpoint NAME, or set BINSIGHT_ENDPOINT_URL"
        )
    return dataclasses.replace(settings, endpoint=endpoint, policy=policy)


def _serve(args: argparse.Namespace) -> int:
    from binsight.errors import BinsightError
    from binsight.gateway.local import serve

    settings = _settings(args)
    try:
        serve(args.host, args.port, settings)
    except OSError as exc:
        raise BinsightError(f"cannot listen on {args.host}:{args.port}: {exc} (pick another --port)") from None
    return 0


def _package(args: argparse.Namespace) -> int:
    from binsight.errors import BinsightError
    from binsight.gateway.package import HANDLER, PackageError, build_lambda_zip

    try:
        report = build_lambda_zip(
            args.out, deps=not args.no_deps, platform=args.platform, python_version=args.python_version
        )
    except PackageError as exc:
        raise BinsightError(exc.message) from None
    except OSError as exc:
        raise BinsightError(f"cannot write {args.out}: {exc}") from None
    deps = ", ".join(report.dependencies) or "none (--no-deps)"
    print(
        f"wrote {report.path} ({report.size_bytes / 1e6:.2f} MB, {report.file_count} files; dependencies: {deps})\n"
        f"Lambda handler: {HANDLER}"
    )
    return 0


def _invoke(args: argparse.Namespace) -> int:
    from binsight.errors import BinsightError
    from binsight.gateway.errors import RetryableGatewayError
    from binsight.gateway.handler import handle

    settings = _settings(args)
    try:
        text = sys.stdin.read() if args.event == "-" else Path(args.event).read_text(encoding="utf-8")
        event = json.loads(text)
    except (OSError, json.JSONDecodeError) as exc:
        raise BinsightError(f"cannot read the event {args.event}: {exc}") from None
    try:
        response = handle(event, None, settings=settings)
    except RetryableGatewayError as exc:
        # Print every record's result first, then fail the way Lambda would (which then retries the event).
        print(json.dumps(exc.response, indent=2), flush=True)
        error = BinsightError(
            f"{exc.message}. Lambda would retry this event; run the command again once the endpoint or S3 "
            "is back (BINSIGHT_GATEWAY_RAISE_ON_RETRYABLE=0 returns the result without raising)"
        )
        error.exit_code = EXIT_RETRYABLE
        raise error from None
    print(json.dumps(response, indent=2))
    return 0 if response.get("statusCode") == 200 else 1
