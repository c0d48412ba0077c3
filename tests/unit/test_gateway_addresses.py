"""SSRF address rules: every refused address class, embedded IPv4 forms, and the allow options."""

from __future__ import annotations

import ipaddress

import pytest

from binsight.gateway.addresses import block_reason, check_address
from binsight.gateway.errors import Forbidden, Misconfigured
from binsight.gateway.settings import FetchPolicy, GatewaySettings


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.5.4", "private"),
        ("192.168.1.20", "private"),
        ("fc00::1", "private"),
        ("169.254.169.254", "cloud metadata"),
        ("fd00:ec2::254", "cloud metadata"),
        ("169.254.10.10", "link-local"),
        ("fe80::1", "link-local"),
        ("100.64.0.1", "carrier-grade NAT"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:169.254.169.254", "cloud metadata"),
        ("64:ff9b::a00:1", "private"),
        ("2002:7f00:1::1", "loopback"),
    ],
)
def test_blocked_classes(address, reason):
    found = block_reason(ipaddress.ip_address(address))
    assert found is not None and found.startswith(reason), found


@pytest.mark.parametrize("address", ["8.8.8.8", "52.95.110.1", "2606:4700:4700::1111"])
def test_public_addresses_pass(address):
    ip = ipaddress.ip_address(address)
    assert block_reason(ip) is None
    check_address(ip, address, FetchPolicy())


def test_allow_options():
    loop = ipaddress.ip_address("127.0.0.1")
    with pytest.raises(Forbidden) as info:
        check_address(loop, "127.0.0.1", FetchPolicy())
    assert info.value.status == 403 and "loopback" in info.value.message

    exact = FetchPolicy.with_allowed(["127.0.0.1"])
    check_address(loop, "127.0.0.1", exact)
    with pytest.raises(Forbidden):
        check_address(ipaddress.ip_address("127.0.0.2"), "127.0.0.2", exact)

    check_address(ipaddress.ip_address("10.9.8.7"), "10.9.8.7", FetchPolicy.with_allowed(["10.0.0.0/8"]))
    check_address(ipaddress.ip_address("10.9.8.7"), "Images.Internal.", FetchPolicy.with_allowed(["images.internal"]))
    check_address(ipaddress.ip_address("192.168.0.9"), "x", FetchPolicy(allow_private=True))


def test_metadata_needs_its_exact_address():
    metadata = ipaddress.ip_address("169.254.169.254")
    for policy in (FetchPolicy(allow_private=True), FetchPolicy.with_allowed(["metadata.internal"])):
        with pytest.raises(Forbidden):
            check_address(metadata, "metadata.internal", policy)
    check_address(metadata, "169.254.169.254", FetchPolicy.with_allowed(["169.254.169.254"]))


def test_settings_from_env():
    settings = GatewaySettings.from_env(
        {
            "BINSIGHT_GATEWAY_ALLOW_HOSTS": "127.0.0.1, images.local 10.0.0.0/8",
            "BINSIGHT_GATEWAY_MAX_BYTES": "1000",
            "BINSIGHT_ENDPOINT_URL": "http://127.0.0.1:8080",
            "BINSIGHT_ENDPOINT_RETRIES": "0",
            "AWS_ENDPOINT_URL_S3": "http://127.0.0.1:5000",
        }
    )
    assert settings.policy.max_bytes == 1000
    assert settings.policy.allow_names == frozenset({"images.local"})
    assert len(settings.policy.allow_networks) == 2
    assert settings.endpoint.url == "http://127.0.0.1:8080" and settings.endpoint.retries == 0
    assert settings.s3_endpoint_url == "http://127.0.0.1:5000"
    for bad in ({"BINSIGHT_ENDPOINT_TIMEOUT": "soon"}, {"BINSIGHT_GATEWAY_MAX_BYTES": "0"}):
        with pytest.raises(Misconfigured):
            GatewaySettings.from_env(bad)
