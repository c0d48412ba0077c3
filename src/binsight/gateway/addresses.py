"""Which IP addresses the gateway refuses to contact (SSRF protection).

Refused unless explicitly allowed: loopback, private (RFC 1918, fc00::/7), link-local (169.254/16,
fe80::/10), unspecified, multicast, reserved, carrier-grade NAT (100.64/10), anything else not globally
routable, and cloud metadata addresses. IPv6 forms that embed an IPv4 address (IPv4-mapped, NAT64, 6to4,
Teredo) are judged by the embedded address too.
"""

from __future__ import annotations

import ipaddress
import logging

from binsight.gateway.errors import Forbidden
from binsight.gateway.settings import FetchPolicy

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
log = logging.getLogger("binsight.gateway")

# Instance/task metadata services: AWS (IMDS v4/v6, ECS task metadata), Alibaba. Allowed only by exact IP.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "169.254.170.2", "100.100.100.200")
)
CGNAT = ipaddress.ip_network("100.64.0.0/10")
NAT64 = ipaddress.ip_network("64:ff9b::/96")
METADATA_REASON = "cloud metadata"


def block_reason(ip: IPAddress) -> str | None:
    """Why ``ip`` is refused (``"loopback"``, ``"private"``, …), or ``None`` when it is a public address."""
    if ip in METADATA_ADDRESSES:
        return METADATA_REASON
    if ip.version == 6:
        for embedded in _embedded_ipv4(ip):
            reason = block_reason(embedded)
            if reason:
                return f"{reason} (embedded in {ip})"
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.is_multicast:
        return "multicast"
    if ip.version == 4 and ip in CGNAT:
        return "carrier-grade NAT (100.64.0.0/10)"
    if ip.is_reserved:
        return "reserved"
    if ip.is_private:
        return "private"
    if not ip.is_global:
        return "not globally routable"
    return None


def check_address(ip: IPAddress, host: str, policy: FetchPolicy) -> None:
    """Raise ``Forbidden`` unless ``ip`` (resolved from ``host``) may be contacted under ``policy``.

    An address inside ``policy.allow_networks`` is always allowed; otherwise metadata addresses are always
    refused, and other non-public addresses are allowed only with ``allow_private`` or an allowed host name.
    """
    reason = block_reason(ip)
    if reason is None:
        return
    if any(ip.version == net.version and ip in net for net in policy.allow_networks):
        return
    if not reason.startswith(METADATA_REASON) and (
        policy.allow_private or host.lower().rstrip(".") in policy.allow_names
    ):
        return
    # The caller learns the category, never the address: internal DNS answers stay in the gateway's log.
    log.info("refused %s: it resolves to %s (%s)", host, ip, reason)
    what = "it is" if parse_ip(host) is not None else "it resolves to"
    raise Forbidden(
        f"refused to fetch from {host}: {what} a non-public address ({reason.split(' (')[0]}). The gateway only "
        "fetches from public addresses; add the host to BINSIGHT_GATEWAY_ALLOW_HOSTS if it is meant to be reachable"
    )


def parse_ip(text: str) -> IPAddress | None:
    """Parse a literal IP address (IPv6 zone ids dropped); ``None`` when ``text`` is a host name."""
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    found = []
    if ip.ipv4_mapped:
        found.append(ip.ipv4_mapped)
    if ip.sixtofour:
        found.append(ip.sixtofour)
    if ip.teredo:
        found.extend(ip.teredo)
    if ip in NAT64:
        found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return found
