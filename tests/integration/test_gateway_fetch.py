"""The SSRF-hardened URL fetcher against real loopback servers.

Loopback is refused by default, so the servers are reached only because a test allows their exact
address; every refusal test checks that no connection was attempted at all.
"""

from __future__ import annotations

import socket

import pytest

from binsight.gateway.addresses import parse_ip
from binsight.gateway.errors import GatewayError
from binsight.gateway.fetch import fetch_url
from binsight.gateway.settings import FetchPolicy
from tests.integration.gateway_servers import ImageServer

ALLOW_LOOPBACK = FetchPolicy.with_allowed(["127.0.0.1"], read_timeout=2.0, total_timeout=5.0)


@pytest.fixture
def images():
    with ImageServer() as server:
        yield server


@pytest.fixture
def no_network(monkeypatch):
    """Fail the test if the fetcher resolves a name or opens a socket."""
    attempts: list = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise AssertionError(f"network used: {args}")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    return attempts


def fetch_error(url: str, policy: FetchPolicy = ALLOW_LOOPBACK) -> GatewayError:
    with pytest.raises(GatewayError) as info:
        fetch_url(url, policy)
    return info.value


def test_allowed_loopback_fetch(images):
    fetched = fetch_url(f"{images.url}/img.jpg?size=small", ALLOW_LOOPBACK)
    assert fetched.data == images.jpeg
    request = images.requests[-1]
    assert request["path"] == "/img.jpg"
    assert request["headers"]["host"] == f"127.0.0.1:{images.port}"
    assert request["headers"]["accept-encoding"] == "identity"


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/img.jpg",
        "http://[::1]:9/img.jpg",
        "http://10.0.0.5/img.jpg",
        "http://192.168.1.1/img.jpg",
        "http://172.16.0.1/img.jpg",
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "http://[fd00:ec2::254]/latest/meta-data/",
        "http://100.64.0.1/img.jpg",
        "https://[::ffff:127.0.0.1]/img.jpg",
        "http://0.0.0.0:80/",
    ],
)
def test_blocked_addresses_refused_before_connecting(url, no_network):
    err = fetch_error(url, FetchPolicy())
    assert err.status == 403 and err.code == "forbidden_address", err.message
    assert no_network == []


def test_loopback_server_never_contacted_when_not_allowed(images):
    err = fetch_error(f"{images.url}/img.jpg", FetchPolicy())
    assert err.status == 403
    assert images.requests == []


def test_ipv6_loopback_refused_even_with_ipv4_allowed():
    with ImageServer("::1") as server:
        err = fetch_error(f"{server.url}/img.jpg")
        assert err.status == 403
        assert server.requests == []


@pytest.mark.parametrize("scheme_url", ["ftp://example.com/x.jpg", "file:///etc/passwd", "gopher://x/", "http:///x"])
def test_only_http_urls(scheme_url, no_network):
    assert fetch_error(scheme_url).status == 400


def test_credentials_in_url_refused(no_network):
    assert fetch_error("http://user:secret@127.0.0.1/img.jpg").status == 400


def test_redirect_to_blocked_address_is_refused(images):
    # The first hop (127.0.0.1) is allowed; the redirect target (another loopback address) is not.
    with ImageServer("127.0.0.2") as internal:
        err = fetch_error(f"{images.url}/redirect?to={internal.url}/img.jpg")
        assert err.status == 403
        assert internal.requests == []
    assert fetch_error(f"{images.url}/redirect?to=http://169.254.169.254/latest/meta-data/").status == 403


def test_allowed_redirect_is_followed(images):
    fetched = fetch_url(f"{images.url}/redirect?to=/img.jpg", ALLOW_LOOPBACK)
    assert fetched.data == images.jpeg
    assert [r["path"] for r in images.requests] == ["/redirect", "/img.jpg"]


def test_too_many_redirects(images):
    err = fetch_error(f"{images.url}/loop")
    assert err.status == 400 and err.code == "too_many_redirects"
    assert len(images.requests) == ALLOW_LOOPBACK.max_redirects + 1


SMALL_CAP = FetchPolicy.with_allowed(["127.0.0.1"], max_bytes=64 * 1024, read_timeout=2.0)


@pytest.mark.parametrize("route", ["/big-nolength?n=3000000", "/big-chunked?n=3000000", "/liar"])
def test_size_cap_while_streaming(images, route):
    err = fetch_error(f"{images.url}{route}", SMALL_CAP)
    assert err.status == 413, err.message


def test_body_under_cap_without_length_is_read(images):
    fetched = fetch_url(f"{images.url}/big-nolength?n=5000", SMALL_CAP)
    assert len(fetched.data) == 5000


def test_missing_and_timeouts(images):
    assert fetch_error(f"{images.url}/missing").status == 404
    slow = FetchPolicy.with_allowed(["127.0.0.1"], read_timeout=0.3)
    err = fetch_error(f"{images.url}/slow?s=3", slow)
    assert err.status == 504 and err.code == "source_timeout"


def test_connection_refused_is_502():
    from tests.conftest import free_port

    err = fetch_error(f"http://127.0.0.1:{free_port()}/img.jpg")
    assert err.status == 502 and err.code == "source_unreachable"


def fake_resolver(monkeypatch, answers: dict[str, list[str]]) -> list[str]:
    """Answer getaddrinfo from ``answers`` (no DNS traffic) and record every lookup."""
    lookups: list[str] = []
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if host not in answers:  # socket.create_connection "resolving" the pinned literal IP
            assert parse_ip(host) is not None, f"unexpected lookup of {host}"
            return real(host, port, *args, **kwargs)
        lookups.append(host)
        return [
            (socket.AF_INET6 if ":" in ip else socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port))
            for ip in answers[host]
        ]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return lookups


def test_every_resolved_address_is_checked(monkeypatch, no_network):
    monkeypatch.undo()  # replace the no-network spies with a resolver that answers, keeping connections refused
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: pytest.fail("connected"))
    fake_resolver(monkeypatch, {"mixed.example": ["93.184.216.34", "10.0.0.1"]})
    err = fetch_error("http://mixed.example/img.jpg", FetchPolicy())
    assert err.status == 403 and "private" in err.message
    assert "10.0.0.1" not in err.message  # the internal DNS answer stays in the gateway's log


def test_host_name_resolved_once_and_connection_pinned(monkeypatch, images):
    lookups = fake_resolver(monkeypatch, {"bins.test": ["127.0.0.1"]})
    fetched = fetch_url(f"http://bins.test:{images.port}/img.jpg", FetchPolicy.with_allowed(["bins.test"]))
    assert fetched.data == images.jpeg
    assert lookups == ["bins.test"]  # one lookup: nothing can re-resolve the name to another address
    assert images.requests[-1]["headers"]["host"] == f"bins.test:{images.port}"


def test_localhost_name_is_refused(images):
    err = fetch_error(f"http://localhost:{images.port}/img.jpg", FetchPolicy())
    assert err.status == 403
    assert images.requests == []
