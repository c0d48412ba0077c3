"""Pinned AWS Deep Learning Container (DLC) image URIs for PyTorch training and inference.

The SageMaker Python SDK's ``image_uris.retrieve`` reads the same registry table, but it pulls in the whole
SDK (and its lookups change with SDK releases); a pinned table is reproducible, works offline and is easy to
review. Source: github.com/aws/deep-learning-containers ``available_images.md`` (PyTorch 2.5.1, Python 3.11,
Ubuntu 22.04, SageMaker flavour). The DLC's torch is 2.5.1 (binsight pins 2.14.1 locally): the job runs
binsight's own code on the container's torch, and binsight uses no torch API newer than 2.5. ``--image``
takes any other URI (an ECR image built from the project's ``Dockerfile``, or a newer DLC).
"""

from __future__ import annotations

from binsight.aws.prices import is_gpu

DLC_VERSION = "2.5.1"
PYTHON = "py311"
# The DLC registry account of each region (763104351884 for the standard regions; opt-in regions differ).
REGISTRIES = {
    "us-east-1": "763104351884",
    "us-east-2": "763104351884",
    "us-west-1": "763104351884",
    "us-west-2": "763104351884",
    "ca-central-1": "763104351884",
    "sa-east-1": "763104351884",
    "eu-west-1": "763104351884",
    "eu-west-2": "763104351884",
    "eu-west-3": "763104351884",
    "eu-central-1": "763104351884",
    "eu-north-1": "763104351884",
    "ap-south-1": "763104351884",
    "ap-northeast-1": "763104351884",
    "ap-northeast-2": "763104351884",
    "ap-southeast-1": "763104351884",
    "ap-southeast-2": "763104351884",
    "af-south-1": "626614931356",
    "ap-east-1": "871362719292",
    "me-south-1": "217643126080",
    "eu-south-1": "692866216735",
}


def dlc_image(region: str, scope: str, instance_type: str) -> str:
    """The PyTorch DLC for ``scope`` (``training`` or ``inference``) on ``instance_type`` in ``region``.

    Raises:
        KeyError: no pinned registry for the region (the caller turns it into an input error).
    """
    account = REGISTRIES[region]
    device = "gpu" if is_gpu(instance_type) else "cpu"
    tag = f"{DLC_VERSION}-{device}-{PYTHON}" + ("-cu124" if device == "gpu" else "") + "-ubuntu22.04-sagemaker"
    return f"{account}.dkr.ecr.{region}.amazonaws.com/pytorch-{scope}:{tag}"
