"""Deployment stages of ``binsight pipeline``: export → deploy → smoke (endpoint, then client → gateway →
endpoint for a URL, an S3 object and an API Gateway request) → cleanup — the report's smoke test and
clean-up, on this machine."""

from __future__ import annotations

import html
import json
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

from binsight.errors import BinsightError
from binsight.pipeline.context import Section, StageContext, StageResult
from binsight.pipeline.loopback import image_server, s3_server

BACKEND_KEYS = ("backend", "accuracy", "macro_f1", "images_per_s", "speedup", "max_abs_prob_diff")


def _model_dir(ctx: StageContext) -> str:
    """The artifact the later stages deploy: the final (tuned) model when there is one, else the baseline."""
    for stage in ("final", "train", "ddp_train"):
        if ctx.outputs.get(stage, {}).get("artifact"):
            return str(ctx.outputs[stage]["artifact"])
    raise BinsightError("no trained model yet: run a training stage (train, ddp_train or final) first")


def _endpoint_name(ctx: StageContext) -> str:
    safe = "".join(c if c.isalnum() else "-" for c in f"{ctx.cfg.name}-{ctx.run_dir.name}")
    return safe.strip("-")[:60] or "pipeline"


def _sample_image(ctx: StageContext) -> tuple[Path, int]:
    """The first test image of the split and its label (the smoke test's input)."""
    from binsight.data.manifest import load_split

    rows = load_split(ctx.require("split", "split_dir"))["test"] or load_split(ctx.require("split", "split_dir"))["val"]
    if not rows:
        raise BinsightError("the split has no test or val images for the smoke test")
    return rows[0].path, rows[0].label


def _json_block(obj: Any) -> str:
    return f"<pre>{html.escape(json.dumps(obj, indent=2))}</pre>"


def stage_export(ctx: StageContext) -> StageResult:
    from binsight.data.manifest import load_split
    from binsight.inference.export import compare_backends, export_onnx, export_sagemaker, preprocess_rows
    from binsight.inference.predictor import Predictor

    artifact = _model_dir(ctx)
    onnx = export_onnx(artifact)
    tarball = export_sagemaker(artifact)
    rows = load_split(ctx.require("split", "split_dir"))["test"]
    arrays, labels = preprocess_rows(Predictor(artifact), rows)
    table = compare_backends(artifact, arrays, labels, backends=("torch", "onnx"), min_seconds=0.5)
    sec = Section(
        "Export",
        summary=f"ONNX model {ctx.rel(onnx)} and SageMaker archive {ctx.rel(tarball)}; the two backends on the "
        "test split (max |Δp| is the largest probability difference from PyTorch).",
        tables=[
            {
                "caption": "backends on the test split",
                "columns": ["backend", "accuracy", "macro-F1", "images/s", "speed-up", "max |Δp|"],
                "rows": [[r[k] for k in BACKEND_KEYS] for r in table],
            }
        ],
    )
    return {"onnx": str(onnx), "model_tar": str(tarball), "backends": table}, sec


def stage_deploy(ctx: StageContext) -> StageResult:
    from binsight.endpoints.api import create_endpoint
    from binsight.endpoints.config import EndpointConfig

    name = _endpoint_name(ctx)
    backend = "onnx" if ctx.outputs.get("export", {}).get("onnx") else "torch"
    # the pipeline's serve section reaches the endpoint's model server whole; the backend follows the export
    config = EndpointConfig(serve=replace(ctx.cfg.serve, backend=backend))
    ep = create_endpoint(name, _model_dir(ctx), config, timeout=ctx.cfg.serve.request_timeout * 3)
    sec = Section(
        "Deploy",
        summary=f"Endpoint {name} is {ep.get('status')} at {ep.get('url')} ({backend} backend).",
        html=_json_block({k: ep.get(k) for k in ("name", "status", "health", "url", "model", "backend")}),
    )
    return {"endpoint": name, "url": ep.get("url")}, sec


def stage_smoke(ctx: StageContext) -> StageResult:
    from binsight.endpoints.api import invoke_endpoint

    name = ctx.require("deploy", "endpoint")
    url = ctx.require("deploy", "url")
    image, label = _sample_image(ctx)
    direct = invoke_endpoint(name, image.read_bytes(), expected_quantity=label)
    answers = {"endpoint (invoke_endpoint)": direct, **gateway_smoke(url, image, label)}
    failed = [k for k, v in answers.items() if "predicted_label" not in v]
    rows = [
        [path, v.get("predicted_label", "error"), v.get("confidence", ""), (v.get("check") or {}).get("decision")]
        for path, v in answers.items()
    ]
    sec = Section(
        "Smoke test",
        summary=f"Test image {image.name} (label {label}) through the endpoint directly and through the event "
        "gateway's three entry shapes." + (f" FAILED: {', '.join(failed)}" if failed else ""),
        tables=[{"caption": "answers", "columns": ["path", "predicted", "confidence", "check"], "rows": rows}],
        html="".join(f"<h3>{html.escape(k)}</h3>{_json_block(v)}" for k, v in answers.items()),
    )
    if failed:
        raise BinsightError(f"smoke test failed for {', '.join(failed)}: {json.dumps(answers)[:800]}")
    return {"answers": answers}, sec


def stage_cleanup(ctx: StageContext) -> StageResult:
    from binsight.endpoints.api import delete_endpoint, list_endpoints

    name = ctx.outputs.get("deploy", {}).get("endpoint") or _endpoint_name(ctx)
    if any(e.get("name") == name for e in list_endpoints()):
        removed = delete_endpoint(name)
    else:
        removed = {"endpoints": [], "endpoint_configs": [], "models": [], "processes": []}
    left = [e["name"] for e in list_endpoints() if e.get("name") == name]
    if left:
        raise BinsightError(f"endpoint {name} is still registered after delete")
    rows = [[kind, ", ".join(map(str, items)) or "—"] for kind, items in removed.items()]
    sec = Section(
        "Clean-up",
        summary="Deleted what the deploy stage created (the report deleted the endpoint, the endpoint config "
        "and the model).",
        tables=[{"caption": "removed", "columns": ["kind", "names / pids"], "rows": rows}],
    )
    return {"removed": removed}, sec


def gateway_smoke(endpoint_url: str, image: Path, label: int) -> dict[str, dict[str, Any]]:
    """Client → gateway → endpoint for an image URL, an S3 object and an API Gateway request (through the
    local API Gateway front over HTTP). Returns each path's answer (the prediction, or the error)."""
    import base64
    import urllib.request

    from binsight.gateway.handler import handle
    from binsight.gateway.local import make_server
    from binsight.gateway.settings import FetchPolicy, GatewaySettings, PredictionEndpoint

    answers: dict[str, dict[str, Any]] = {}
    with image_server(image) as image_url, s3_server(image) as (s3_url, s3_uri):
        settings = GatewaySettings(
            policy=FetchPolicy.with_allowed(["127.0.0.1"]),
            endpoint=PredictionEndpoint(url=endpoint_url),
            s3_endpoint_url=s3_url,
        )
        out = handle({"url": image_url, "expected_quantity": label}, settings=settings)
        answers["gateway: image URL"] = out.get("prediction") or out
        if s3_url:
            out = handle({"s3_uri": s3_uri, "expected_quantity": label}, settings=settings)
            answers["gateway: S3 object"] = out.get("prediction") or out
        else:
            answers["gateway: S3 object"] = {"skipped": s3_uri}
        server = make_server("127.0.0.1", 0, settings)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            body = json.dumps(
                {"image_b64": base64.b64encode(image.read_bytes()).decode(), "expected_quantity": label}
            ).encode()
            req = urllib.request.Request(
                f"http://127.0.0.1:{server.server_address[1]}/predict",
                data=body,
                headers={"Content-Type": "application/json"},
            )
            try:
                with urllib.request.urlopen(req, timeout=120) as resp:
                    answers["gateway: API Gateway request (HTTP)"] = json.loads(resp.read())
            except urllib.error.HTTPError as exc:
                answers["gateway: API Gateway request (HTTP)"] = json.loads(exc.read() or b"{}")
        finally:
            server.shutdown()
            server.server_close()
    if "skipped" in answers["gateway: S3 object"]:
        answers.pop("gateway: S3 object")
    return answers
