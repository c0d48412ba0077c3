"""A small pinned price table for cost estimates (dry-run, and a finished job's cost).

On-demand list prices in US dollars, us-east-1, from the public pricing pages (aws.amazon.com/sagemaker/pricing,
/lambda/pricing, /api-gateway/pricing, /s3/pricing) as listed in 2025. Other regions list 0–30% higher;
estimates there are marked as us-east-1 figures. A table in the code (not the Pricing API) because estimates
must work in ``--dry-run`` with no account and no network, and because the handful of instance types the
report used covers binsight's jobs; an instance type outside it is refused (it is also how a typo such as
``ml.m5.xlarg`` is caught before anything is created). Managed spot is billed at the spot price, which
SageMaker reports back as ``BillableTimeInSeconds``; before a job runs only the on-demand upper bound is known.
"""

from __future__ import annotations

PRICE_REGION = "us-east-1"

# instance type: (USD per instance-hour, usable for training, usable for hosting and batch transform)
INSTANCES: dict[str, tuple[float, bool, bool]] = {
    "ml.t2.medium": (0.056, False, True),
    "ml.m5.large": (0.115, True, True),
    "ml.m5.xlarge": (0.23, True, True),
    "ml.m5.2xlarge": (0.461, True, True),
    "ml.m5.4xlarge": (0.922, True, True),
    "ml.c5.large": (0.102, False, True),
    "ml.c5.xlarge": (0.204, True, True),
    "ml.c5.2xlarge": (0.408, True, True),
    "ml.c5.4xlarge": (0.816, True, True),
    "ml.g4dn.xlarge": (0.736, True, True),
    "ml.g4dn.2xlarge": (0.94, True, True),
    "ml.g5.xlarge": (1.408, True, True),
    "ml.g5.2xlarge": (1.515, True, True),
    "ml.p3.2xlarge": (3.825, True, True),
}

LAMBDA_GB_SECOND = 0.0000166667
LAMBDA_PER_MILLION = 0.20
HTTP_API_PER_MILLION = 1.00
S3_GB_MONTH = 0.023


def hourly(instance_type: str) -> float:
    return INSTANCES[instance_type][0]


def is_gpu(instance_type: str) -> bool:
    return instance_type.split(".")[1].startswith(("g", "p"))


def instance_seconds_cost(instance_type: str, seconds: float, count: int = 1) -> float:
    """Cost of ``count`` instances for ``seconds`` each."""
    return hourly(instance_type) * count * seconds / 3600.0


def lambda_cost_per_million(memory_mb: int, mean_seconds: float) -> float:
    """Lambda + HTTP API cost of one million requests of ``mean_seconds`` at ``memory_mb``."""
    gb_seconds = 1e6 * mean_seconds * memory_mb / 1024
    return gb_seconds * LAMBDA_GB_SECOND + LAMBDA_PER_MILLION + HTTP_API_PER_MILLION


def usd(value: float) -> str:
    return f"${value:,.2f}" if value >= 0.01 or value == 0 else f"${value:.4f}"
