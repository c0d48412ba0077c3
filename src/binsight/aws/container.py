"""The inference entry inside AWS's PyTorch inference container (real-time endpoints and Batch Transform).

The container's inference toolkit imports ``code/inference.py`` from ``model.tar.gz``, which re-exports these
four functions. They parse requests with the same contract as ``binsight serve``
(:func:`binsight.serving.schemas.parse_invocation`) and predict with the one
:class:`~binsight.inference.predictor.Predictor`, so an answer from AWS is byte-for-byte the prediction JSON
of ``binsight predict``. Batch Transform sends each S3 object as one request and writes the answer to
``<output>/<key>.out``.
"""

from __future__ import annotations

import json
from typing import Any

from binsight.inputs.values import ApiError
from binsight.serving.schemas import InvocationRequest, parse_invocation


def model_fn(model_dir: str):
    """Load the artifact unpacked from ``model.tar.gz`` (``/opt/ml/model``)."""
    from binsight.inference.predictor import Predictor

    return Predictor(model_dir)


CUSTOM_ATTRIBUTES = "X-Amzn-SageMaker-Custom-Attributes"


def input_fn(body: bytes | str, content_type: str, context: Any = None) -> InvocationRequest:
    """Parse one request; raises ``ValueError`` with the endpoint's message for a bad one.

    ``context`` is the serving toolkit's request context (handed over when the handler takes one): the
    expected quantity in ``X-Amzn-SageMaker-Custom-Attributes`` (what the gateway sends) is read from it.
    """
    data = body.encode() if isinstance(body, str) else bytes(body)
    attributes = None
    if context is not None and hasattr(context, "get_request_header"):
        attributes = context.get_request_header(0, CUSTOM_ATTRIBUTES)
    try:
        return parse_invocation(content_type, data, attributes)
    except ApiError as exc:
        raise ValueError(f"{exc.status} {exc.code}: {exc.message}") from None


def predict_fn(request: InvocationRequest, predictor) -> dict[str, Any]:
    images = [predictor.decode(b) for b in request.images]
    predictions = predictor.predict_images(images, request.expected)
    return {"predictions": predictions} if request.batched else predictions[0]


def output_fn(prediction: dict[str, Any], accept: str = "application/json") -> str:
    return json.dumps(prediction)
