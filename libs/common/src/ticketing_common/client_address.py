"""The address of the client behind a request, believing ``X-Forwarded-For`` only from trusted proxies.

Anyone can send ``X-Forwarded-For``; only a proxy we run (the gateway, the cluster's ingress controller) says the
truth in it. So the TCP peer is the client unless it is a trusted proxy (``TRUSTED_PROXIES``); then the client is
the right-most ``X-Forwarded-For`` entry that is not itself a trusted proxy (entries further left were written
by whoever the first trusted proxy heard from, and can be made up).
"""

from __future__ import annotations

import functools
import ipaddress
from typing import Annotated

from pydantic import AfterValidator
from starlette.requests import HTTPConnection

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Loopback: a proxy on the same host (the gateway and every service of `ticketing up`).
DEFAULT_TRUSTED_PROXIES = "127.0.0.0/8,::1"
UNKNOWN_CLIENT = "unknown"


@functools.lru_cache(maxsize=16)
def parse_trusted_proxies(value: str) -> tuple[IPNetwork, ...]:
    """The networks of a comma-separated list of IP addresses and CIDRs; ValueError names a bad or unsafe entry."""
    networks: list[IPNetwork] = []
    for entry in (part.strip() for part in value.split(",")):
        if not entry:
            continue
        try:
            network = ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise ValueError(f"{entry!r} is not an IP address or CIDR") from None
        if network.prefixlen == 0:
            # Trusting every peer would let any client choose the address the rate limits count.
            raise ValueError(f"{entry!r} trusts every address; list the proxies' addresses or their network")
        networks.append(network)
    return tuple(networks)


def _valid_trusted_proxies(value: str) -> str:
    parse_trusted_proxies(value)
    return value


TrustedProxies = Annotated[str, AfterValidator(_valid_trusted_proxies)]
"""A setting: comma-separated IPs/CIDRs of the proxies whose ``X-Forwarded-For`` is believed."""


def _parse_address(value: str) -> IPAddress | None:
    value = value.strip()
    if value.startswith("[") and "]" in value:  # "[v6]:port"
        value = value[1 : value.index("]")]
    elif value.count(":") == 1:  # "v4:port"
        value = value.partition(":")[0]
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    # An IPv4 client seen through an IPv6 socket is still that IPv4 client.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _is_trusted(address: IPAddress | None, trusted: tuple[IPNetwork, ...]) -> bool:
    return address is not None and any(address in network for network in trusted)


def resolve_client_address(peer: str | None, forwarded_for: list[str], trusted: tuple[IPNetwork, ...]) -> str:
    """The client's address from the TCP ``peer`` and the request's ``X-Forwarded-For`` header values."""
    peer_address = _parse_address(peer) if peer else None
    if not _is_trusted(peer_address, trusted):
        return str(peer_address) if peer_address is not None else (peer or UNKNOWN_CLIENT)
    hops = [hop for value in forwarded_for for hop in value.split(",") if hop.strip()]
    client = peer_address
    for hop in reversed(hops):
        address = _parse_address(hop)
        if address is None:
            # Garbage where an address should be: the last trusted proxy is the best we know.
            break
        client = address
        if not _is_trusted(address, trusted):
            break
    return str(client)


def client_address(request: HTTPConnection) -> str:
    """The address of the client that sent ``request`` (see the module docstring), as text."""
    trusted = parse_trusted_proxies(request.app.state.settings.trusted_proxies)
    peer = request.client.host if request.client else None
    return resolve_client_address(peer, request.headers.getlist("x-forwarded-for"), trusted)
