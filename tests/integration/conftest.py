"""Fixtures shared by the integration tests: the gateway's loopback servers and the training tests' tiny split.

A module that needs something else defines a fixture of the same name, which wins over these.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.gateway_servers import FakeEndpoint, moto_s3
from tests.integration.train_helpers import make_split


@pytest.fixture(scope="module")
def s3_server():
    """moto's real S3 server on loopback, one per test module; its URL."""
    with moto_s3() as url:
        yield url


@pytest.fixture
def endpoint():
    """A fresh :class:`FakeEndpoint` on loopback (it records every request it gets)."""
    with FakeEndpoint() as server:
        yield server


@pytest.fixture(scope="module")
def split(tmp_path_factory) -> Path:
    """The default tiny split of :func:`make_split`, written once per test module."""
    return make_split(tmp_path_factory.mktemp("data"))
