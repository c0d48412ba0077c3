"""The gateway must fit in a Lambda zip: importing it pulls in no torch, numpy or model code."""

from __future__ import annotations

import json
import subprocess
import sys

MODULES = [
    "binsight.gateway.handler",
    "binsight.gateway.fetch",
    "binsight.gateway.clients",
    "binsight.gateway.images",
    "binsight.gateway.local",
    "binsight.gateway.package",
]


def test_gateway_imports_no_torch():
    code = (
        "import json, sys\n"
        + "".join(f"import {m}\n" for m in MODULES)
        + "from binsight.gateway.images import inspect_image\n"
        + "from PIL import Image\n"
        + "print(json.dumps(sorted(sys.modules)))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    loaded = set(json.loads(proc.stdout))
    assert "binsight.gateway.handler" in loaded
    forbidden = {"torch", "torchvision", "numpy", "binsight.models", "binsight.inference", "binsight.serving"}
    assert not forbidden & loaded, sorted(forbidden & loaded)
