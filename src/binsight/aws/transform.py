"""Audits at warehouse scale: a SageMaker Batch Transform job over an S3 prefix of bin photos, collected into
the outputs of ``binsight audit``.

The job uses the endpoint's model and inference entry (:mod:`binsight.aws.container`): every photo under
``<source>/bin-images/`` is sent as one ``image/jpeg`` request (``SplitType`` None) and its prediction JSON is
written to ``<output>/<key relative to bin-images/>.out``. :func:`collect` joins those predictions with the
bins of the source prefix (bin id = photo stem, records from ``metadata/<id>.json``, read by the audit's own
S3 source) and runs the audit's own runner with a scorer that answers from the ``.out`` files, so
``audit.csv``, ``audit.json`` and ``audit.html`` are those ``binsight audit s3://SOURCE`` writes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from binsight.aws.api import Api
from binsight.aws.endpoint import REVIEW_BAND_ENV
from binsight.aws.errors import AwsCallError, AwsInputError
from binsight.aws.ledger import tags
from binsight.aws.logs import follow_job
from binsight.aws.session import Target
from binsight.errors import DataError

log = logging.getLogger("binsight.aws")

LOG_GROUP = "/aws/sagemaker/TransformJobs"
TERMINAL = ("Completed", "Failed", "Stopped")
IMAGES = "bin-images"


def audit_prefixes(uri: str) -> tuple[str, str]:
    """``(audit source, transform input)`` for ``--input``: an S3 prefix in ABID layout (``bin-images/`` +
    ``metadata/``), given as the prefix or as its ``bin-images/``. The records stay out of the job's input."""
    if not uri.startswith("s3://") or not uri[5:].partition("/")[0]:
        raise AwsInputError(f"--input {uri!r}: expected s3://BUCKET/PREFIX (ABID layout: bin-images/, metadata/)")
    source = uri.rstrip("/")
    if source.endswith("/" + IMAGES):
        source = source[: -len(IMAGES) - 1]
    return source, f"{source}/{IMAGES}/"


def start_transform_job(
    api: Api,
    target: Target,
    name: str,
    model: str,
    input_uri: str,
    output_uri: str,
    *,
    instance_type: str,
    instance_count: int = 1,
    concurrency: int = 4,
) -> dict:
    request: dict[str, Any] = {
        "TransformJobName": name,
        "ModelName": model,
        "MaxConcurrentTransforms": concurrency,
        "MaxPayloadInMB": 6,
        "BatchStrategy": "SingleRecord",
        "TransformInput": {
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": input_uri}},
            "ContentType": "image/jpeg",
            "SplitType": "None",
        },
        "TransformOutput": {"S3OutputPath": output_uri, "Accept": "application/json", "AssembleWith": "None"},
        "TransformResources": {"InstanceType": instance_type, "InstanceCount": instance_count},
        "Tags": tags(target.deployment),
    }
    api.create(
        "sagemaker", "create_transform_job", "transform_job", name, arn=lambda r: r["TransformJobArn"], **request
    )
    return request


def check_input(api: Api, input_uri: str) -> None:
    """The job's input prefix holds at least one object (else SageMaker fails the job late)."""
    bucket, _, prefix = input_uri[5:].partition("/")
    if api.dry_run:
        return
    try:
        found = api.call("s3", "list_objects_v2", Bucket=bucket, Prefix=prefix, MaxKeys=1).get("KeyCount", 0)
    except AwsCallError as exc:
        raise AwsInputError(f"cannot list {input_uri}: {exc}") from None
    if not found:
        raise AwsInputError(f"no photos under {input_uri} (the audit reads ABID's layout: PREFIX/bin-images/*.jpg)")


def wait_transform_job(api: Api, name: str, *, logs: bool = True, interval: float = 15.0) -> dict[str, Any]:
    """Wait for the job to end with a live status line and its CloudWatch logs; returns the last describe."""
    return follow_job(
        api,
        f"transform job {name}",
        lambda: api.call("sagemaker", "describe_transform_job", TransformJobName=name),
        "TransformJobStatus",
        TERMINAL,
        log_group=LOG_GROUP if logs else None,
        log_prefix=f"{name}/",
        interval=interval,
    )


def review_band(api: Api, model: str) -> dict[str, float] | None:
    """The review band the job's model was deployed with, or None when the model is gone or predates it."""
    try:
        env = api.call("sagemaker", "describe_model", ModelName=model)["PrimaryContainer"].get("Environment", {})
    except AwsCallError as exc:
        log.warning("model %s: %s; the default review band is used", model, exc)
        return None
    band = env.get(REVIEW_BAND_ENV)
    return {k: float(v) for k, v in json.loads(band).items()} if band else None


def _split(uri: str) -> tuple[str, str]:
    bucket, _, key = uri[5:].partition("/")
    return bucket, key


class TransformScorer:
    """A :class:`~binsight.audit.bins.Scorer` whose probabilities are the ``.out`` predictions of a transform job.

    :meth:`bins` wraps the audit source's bins so that loading a bin's photo also reads its ``.out`` file; the
    prediction is then found by the photo's sha256 when the runner asks for scores. The runner loads one batch
    ahead of the one it scores, so only the latest ``keep`` predictions are held (a photo already scored in an
    earlier collection is never asked for, and its prediction just ages out).
    """

    def __init__(
        self, s3, input_uri: str, output_uri: str, thresholds: dict[str, float] | None = None, keep: int = 4096
    ) -> None:
        self.s3 = s3
        self.input_bucket, self.input_prefix = _split(input_uri)
        self.output_bucket, self.output_prefix = _split(output_uri.rstrip("/") + "/")
        self.output_uri = f"s3://{self.output_bucket}/{self.output_prefix}"
        self.thresholds = dict(thresholds or {"review_low": 0.2, "review_high": 0.5})
        self.version = ""
        self.class_labels: list[str] = []
        self._answers: OrderedDict[str, dict | DataError] = OrderedDict()
        self.keep = keep
        self._lock = threading.Lock()
        self._learn_from_first()

    def _learn_from_first(self) -> None:
        from binsight.audit.scorers import prediction_model

        page = self.s3.list_objects_v2(Bucket=self.output_bucket, Prefix=self.output_prefix, MaxKeys=50)
        first = next((o["Key"] for o in page.get("Contents", []) if o["Key"].endswith(".out")), None)
        if first is None:
            raise AwsInputError(f"the transform job wrote no predictions (*.out) under {self.output_uri}")
        answer = self._read(first)
        if isinstance(answer, DataError):
            raise AwsInputError(f"s3://{self.output_bucket}/{first}: {answer}")
        self.version, self.class_labels = prediction_model(answer)

    def _read(self, key: str) -> dict | DataError:
        try:
            body = self.s3.get_object(Bucket=self.output_bucket, Key=key)["Body"].read()
        except self.s3.exceptions.NoSuchKey:
            return DataError("no prediction in the transform output (the job could not score this photo)")
        try:
            answer = json.loads(body)
        except ValueError:
            return DataError(f"s3://{self.output_bucket}/{key} is not a prediction JSON")
        return answer if isinstance(answer, dict) else DataError(f"s3://{self.output_bucket}/{key}: not an object")

    def out_key(self, location: str) -> str:
        key = location[len(f"s3://{self.input_bucket}/") :]
        return f"{self.output_prefix}{key[len(self.input_prefix) :]}.out"

    def bins(self, refs: list) -> list:
        """``refs`` whose loading also fetches each photo's prediction."""

        def load(ref, original=None):
            loaded = original(ref)
            if loaded.data:
                answer = self._read(self.out_key(ref.location))
                with self._lock:
                    self._answers[hashlib.sha256(loaded.data).hexdigest()] = answer
                    while len(self._answers) > self.keep:
                        self._answers.popitem(last=False)
            return loaded

        return [dataclasses.replace(r, loader=lambda ref, o=r.loader: load(ref, o)) for r in refs]

    def score(self, images: list[bytes]) -> list[np.ndarray | DataError]:
        from binsight.audit.scorers import prediction_model, prediction_probs

        out: list[np.ndarray | DataError] = []
        for data in images:
            with self._lock:
                answer = self._answers.pop(hashlib.sha256(data).hexdigest(), None)
            if answer is None:
                answer = DataError("photo changed since it was loaded")
            if isinstance(answer, DataError):
                out.append(answer)
                continue
            version, labels = prediction_model(answer)
            if (version, labels) != (self.version, self.class_labels):
                out.append(DataError(f"predicted by model {version} {labels}, not {self.version} {self.class_labels}"))
                continue
            try:
                out.append(prediction_probs(answer, labels))
            except (KeyError, TypeError, ValueError):
                out.append(DataError(f"a prediction without probabilities for {labels}"))
        return out

    def close(self) -> None:
        """Nothing to release (the runner's loader threads did the reading)."""


def collect(
    api: Api, desc: dict[str, Any], out: Path, *, workers: int = 8, show_progress: bool = True
) -> dict[str, Any]:
    """Write ``audit.csv``/``.json``/``.html`` into ``out`` from a transform job's ``.out`` files and the records
    of its source prefix. Returns the runner's result (summary, ranked rows)."""
    from binsight.audit.runner import run_audit
    from binsight.audit.sources import s3_source

    input_uri = desc["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"]
    source, images = audit_prefixes(input_uri)
    if images != input_uri.rstrip("/") + "/":
        raise AwsInputError(f"transform job {desc.get('TransformJobName')} did not read an ABID layout: {input_uri}")
    scorer = TransformScorer(
        api.client("s3"), images, desc["TransformOutput"]["S3OutputPath"], review_band(api, desc["ModelName"])
    )
    endpoint_url = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")  # as boto3 reads
    refs = scorer.bins(s3_source(source, cache=Path(out) / "s3-records", endpoint_url=endpoint_url))
    return run_audit(refs, scorer, Path(out), source=source, workers=workers, show_progress=show_progress)
