"""User-facing errors. The CLI prints their message (no traceback) and exits non-zero."""


class BinsightError(Exception):
    """An error the user can act on: the message says what was wrong and how to fix it."""

    exit_code = 1


class DataError(BinsightError):
    """Input data is missing, corrupt or inconsistent."""


class CheckpointError(BinsightError):
    """A checkpoint is missing, truncated or corrupt."""


class Interrupted(BinsightError):
    """Work stopped on a signal or a time limit after saving what it had."""

    exit_code = 3
