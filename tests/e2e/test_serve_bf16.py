"""`binsight serve --backend torch-bf16`: a real server on loopback answers in bf16, within the stated tolerance
of the float32 Predictor."""

from __future__ import annotations

import httpx
import pytest

from binsight.inference.predictor import Predictor
from tests.e2e.test_serve import assert_prediction, jpeg_bytes, make_artifact, start_server
from tests.unit.test_precision import PROB_TOLERANCE

pytestmark = pytest.mark.timeout(150)


def test_bf16_server_agrees_with_float32_predictor(tmp_path):
    artifact = make_artifact(tmp_path / "artifact")
    reference = Predictor(artifact, backend="torch-fp32", threads=1)
    server = start_server(artifact, tmp_path, "--backend", "torch-bf16", "--workers-threads", "1")
    differs = False
    try:
        server.wait_ready()
        for seed in range(3):
            body = jpeg_bytes(seed)
            answer = httpx.post(
                server.url + "/invocations", content=body, headers={"content-type": "image/jpeg"}, timeout=30
            )
            assert answer.status_code == 200, answer.text
            doc = answer.json()
            assert_prediction(doc)
            expected = reference.predict_bytes(body)["probabilities"]
            assert max(abs(doc["probabilities"][k] - p) for k, p in expected.items()) <= PROB_TOLERANCE
            differs |= doc["probabilities"] != expected
    finally:
        server.stop()
    assert differs, "every answer was bit-identical to float32: the server did not run bf16"
