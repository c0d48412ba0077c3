"""Fixtures shared by the end-to-end tests."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """BINSIGHT_HOME as a tmp folder for the whole test module; at the end every endpoint left is cleaned up, so
    no supervisor or model server outlives the module."""
    from binsight.endpoints.api import cleanup

    with pytest.MonkeyPatch.context() as mp:
        path = tmp_path_factory.mktemp("binsight-home")
        mp.setenv("BINSIGHT_HOME", str(path))
        yield path
        cleanup(timeout=10)  # whatever the tests (or a failing one) left behind
