"""Find what binsight made by its tag, for a clean-up without (or beyond) the ledger.

The ledger records a resource right after its create call returns; a process killed in between, a ledger
deleted by hand, or a deploy made from another machine leaves resources only their tag
``binsight:deployment`` knows about. SageMaker resources and Lambda functions are found through the Resource
Groups Tagging API, HTTP APIs through their own tags, roles by binsight's role path ``/binsight/`` and their
tags, bucket notifications by their ``binsight-`` id.
"""

from __future__ import annotations

import re
from typing import Any

from binsight.aws.api import Api
from binsight.aws.iam import ROLE_PATH
from binsight.aws.ledger import TAG_KEY, Resource

# ARN resource part → ledger kind
_SAGEMAKER = {
    "endpoint": "endpoint",
    "endpoint-config": "endpoint_config",
    "model": "model",
    "hyper-parameter-tuning-job": "tuning_job",
    "training-job": "training_job",
    "transform-job": "transform_job",
}
_ARN = re.compile(r"arn:aws[a-z-]*:(sagemaker|lambda):[^:]*:\d*:([a-z-]+)[/:]([A-Za-z0-9-]+)")


def _pages(api: Api, service: str, operation: str, token_in: str, token_out: str, **params: Any):
    token = None
    while True:
        page = api.call(service, operation, **params, **({token_in: token} if token else {}))
        yield page
        token = page.get(token_out)
        if not token:
            return


def _wanted(tags: dict[str, str], deployment: str | None) -> str | None:
    value = tags.get(TAG_KEY)
    return value if value is not None and deployment in (None, value) else None


def tagged(api: Api, deployment: str | None = None, bucket: str = "") -> list[Resource]:
    """Every resource in ``api.region`` tagged for ``deployment`` (all deployments when None)."""
    found: list[Resource] = []
    filters = [{"Key": TAG_KEY, **({"Values": [deployment]} if deployment else {})}]
    for page in _pages(api, "resourcegroupstaggingapi", "get_resources", "PaginationToken", "PaginationToken",
                       TagFilters=filters, ResourceTypeFilters=["sagemaker", "lambda:function"]):  # fmt: skip
        for item in page.get("ResourceTagMappingList", []):
            match = _ARN.search(item["ResourceARN"])
            dep = _wanted({t["Key"]: t["Value"] for t in item.get("Tags", [])}, deployment)
            if not match or dep is None:
                continue
            service, kind, name = match.groups()
            kind = "function" if service == "lambda" else _SAGEMAKER.get(kind, "")
            if kind:
                found.append(Resource(dep, kind, name, api.region, item["ResourceARN"]))
    for page in _pages(api, "apigatewayv2", "get_apis", "NextToken", "NextToken"):
        for item in page.get("Items", []):
            dep = _wanted(item.get("Tags") or {}, deployment)
            if dep is not None:
                found.append(Resource(dep, "api", item["Name"], api.region, item["ApiId"]))
    for page in _pages(api, "iam", "list_roles", "Marker", "Marker", PathPrefix=ROLE_PATH):
        for role in page.get("Roles", []):
            tags = {t["Key"]: t["Value"] for t in api.call("iam", "list_role_tags", RoleName=role["RoleName"])["Tags"]}
            dep = _wanted(tags, deployment)
            if dep is None:
                continue
            found.append(Resource(dep, "role", role["RoleName"], api.region, role["Arn"]))
            for policy in api.call("iam", "list_role_policies", RoleName=role["RoleName"])["PolicyNames"]:
                extra = {"role": role["RoleName"], "policy": policy}
                found.append(Resource(dep, "role_policy", f"{role['RoleName']}/{policy}", api.region, extra=extra))
    if bucket:
        config = api.call("s3", "get_bucket_notification_configuration", Bucket=bucket)
        for item in config.get("LambdaFunctionConfigurations", []):
            nid = item.get("Id", "")
            dep = nid[len("binsight-") :] if nid.startswith("binsight-") else None
            if dep and deployment in (None, dep):
                found.append(Resource(dep, "s3_notification", nid, api.region, extra={"bucket": bucket}))
    return found
