"""Progress bars that stay quiet when output is not a terminal unless asked."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import Any, TypeVar

T = TypeVar("T")


def progress(iterable: Iterable[T] | None = None, **kwargs: Any):
    """A tqdm bar with rate and ETA; disabled with ``BINSIGHT_NO_PROGRESS=1``."""
    from tqdm.auto import tqdm

    disable = os.environ.get("BINSIGHT_NO_PROGRESS") == "1"
    kwargs.setdefault("dynamic_ncols", True)
    kwargs.setdefault("file", sys.stderr)
    kwargs.setdefault("mininterval", 0.5)
    return tqdm(iterable, disable=disable, **kwargs)
