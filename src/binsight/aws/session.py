"""Where binsight works on AWS, checked before anything is created: region, credentials, bucket, role, names.

Region: ``--region``, else the standard chain (``AWS_REGION`` / ``AWS_DEFAULT_REGION`` / the profile's
``region``). Credentials: the standard chain (environment, ``~/.aws``, SSO, instance role). Bucket:
``--bucket`` or ``BINSIGHT_AWS_BUCKET``; it must exist and be in the region (SageMaker refuses channels in
another region, late and with a vague message). Every check raises :class:`AwsInputError` (exit 2).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from binsight.aws.api import Api
from binsight.aws.errors import AwsCallError, AwsInputError
from binsight.aws.prices import INSTANCES, PRICE_REGION

DEPLOYMENT_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,23}$")
ROLE_ARN_RE = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+$")


@dataclass(frozen=True)
class Target:
    """Region, bucket, key prefix and deployment of one command."""

    region: str
    bucket: str
    prefix: str
    deployment: str

    def uri(self, *parts: str) -> str:
        """``s3://bucket/prefix/deployment/parts…``."""
        return "s3://" + "/".join([self.bucket, self.key(*parts)])

    def key(self, *parts: str) -> str:
        return "/".join(p.strip("/") for p in (self.prefix, self.deployment, *parts) if p.strip("/"))


def resolve_region(flag: str | None) -> str:
    if flag:
        return flag
    import boto3

    region = os.environ.get("AWS_REGION") or boto3.Session().region_name
    if not region:
        raise AwsInputError(
            "no AWS region: pass --region (e.g. --region us-east-1) or set AWS_REGION / AWS_DEFAULT_REGION"
        )
    return region


def resolve_target(region: str | None, bucket: str | None, prefix: str, deployment: str) -> Target:
    """The :class:`Target` from flags and environment; local checks only (no call made)."""
    if not DEPLOYMENT_RE.match(deployment):
        raise AwsInputError(
            f"deployment name {deployment!r} is not valid: 1–24 characters, lower-case letters, digits and '-', "
            "starting with a letter or digit (it becomes part of every resource name)"
        )
    bucket = bucket or os.environ.get("BINSIGHT_AWS_BUCKET", "")
    if not bucket:
        raise AwsInputError("no S3 bucket: pass --bucket NAME or set BINSIGHT_AWS_BUCKET")
    if bucket.startswith("s3://") or "/" in bucket:
        raise AwsInputError(f"--bucket takes a bucket name, not {bucket!r}; use --prefix for a key prefix")
    return Target(resolve_region(region), bucket, prefix.strip("/"), deployment)


def check_instance_type(instance_type: str, use: str) -> None:
    """``use`` is ``training`` or ``hosting``; unknown or unsuitable types are refused with the known list."""
    import difflib

    column = 1 if use == "training" else 2
    known = [name for name, row in INSTANCES.items() if row[column]]
    if instance_type not in known:
        close = difflib.get_close_matches(instance_type, known, n=1)
        hint = f" — did you mean {close[0]}?" if close else ""
        raise AwsInputError(
            f"instance type {instance_type!r} is not a known {use} instance type{hint} (known: {', '.join(known)}; "
            f"prices pinned for {PRICE_REGION}, see binsight/aws/prices.py)"
        )


def check_role(role: str, what: str) -> None:
    if not ROLE_ARN_RE.match(role or ""):
        raise AwsInputError(
            f"{what} needs a SageMaker execution role: pass --role arn:aws:iam::ACCOUNT:role/NAME "
            "(docs/aws.md shows how to create one)" + (f"; {role!r} is not a role ARN" if role else "")
        )


def check_account(api: Api, target: Target) -> str:
    """Credentials work and the bucket is in the region. Returns the account id. Skipped in dry-run."""
    if api.dry_run:
        return "<account>"
    if api.boto_session().get_credentials() is None:
        raise AwsInputError(
            "no AWS credentials found: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or run "
            "'aws configure' / 'aws sso login' (the standard credential chain is used)"
        )
    try:
        account = api.call("sts", "get_caller_identity")["Account"]
    except AwsCallError as exc:
        raise AwsInputError(f"AWS rejected the credentials: {exc}") from None
    try:
        location = api.call("s3", "get_bucket_location", Bucket=target.bucket).get("LocationConstraint")
    except AwsCallError as exc:
        if exc.code in ("NoSuchBucket", "404", "NotFound"):
            raise AwsInputError(
                f"bucket {target.bucket!r} does not exist: create it in {target.region} first "
                f"(aws s3 mb s3://{target.bucket} --region {target.region})"
            ) from None
        raise AwsInputError(f"cannot read bucket {target.bucket!r}: {exc}") from None
    bucket_region = {None: "us-east-1", "": "us-east-1", "EU": "eu-west-1"}.get(location, location)
    if bucket_region != target.region:
        raise AwsInputError(
            f"bucket {target.bucket!r} is in {bucket_region}, not in {target.region}: SageMaker reads and writes "
            f"S3 in its own region; use --region {bucket_region} or a bucket in {target.region}"
        )
    return account
