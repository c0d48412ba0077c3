"""Errors of the AWS commands."""

from __future__ import annotations

from binsight.errors import BinsightError


class AwsInputError(BinsightError):
    """Bad input found before anything was created (no region, no credentials, a bad option): exit 2."""

    exit_code = 2


class AwsCallError(BinsightError):
    """An AWS call failed after validation; what was created so far is in the ledger for ``aws cleanup``."""

    def __init__(self, message: str, code: str = "") -> None:
        super().__init__(message)
        self.code = code
