"""Which client an address belongs to, for the caps per address.

An IPv6 host usually has a whole /64 to itself, and can take a new address from it
for every connection: counted address by address, one host would have as many shares
as it likes. IPv6 addresses count by their /64 (IPv4-mapped ones as the IPv4 address
they carry); IPv4 addresses count one by one.
"""

from __future__ import annotations

import functools
import ipaddress


@functools.lru_cache(maxsize=4096)  # (parsed per request: a few addresses repeat)
def client_of(address: str) -> str:
    """The key under which connections from ``address`` are counted."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network(f"{ip}/64", strict=False))
    return str(ip)
