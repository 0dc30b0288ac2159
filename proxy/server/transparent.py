"""Where a redirected connection was going: the original destination (Linux).

An ``iptables``/``nftables`` ``REDIRECT`` (or ``DNAT``) rewrites the
destination of a connection to the proxy's listener; conntrack remembers
the original one, and ``getsockopt(SOL_IP, SO_ORIGINAL_DST)`` (IPv4) or
``getsockopt(SOL_IPV6, IP6T_SO_ORIGINAL_DST)`` (IPv6) reads it back as a
``sockaddr_in``/``sockaddr_in6``. With ``TPROXY`` the connection is not
rewritten at all: the listening socket has ``IP_TRANSPARENT`` and the
accepted socket's own local address is the original destination.

A connection that was not redirected has no conntrack NAT entry; then its
local address is taken, which is the proxy's own listener, and the layers
refuse it as a loop (``proxy.layers.entry``) unless the listener is a
TPROXY one. docs/modes.md has the rules.
"""

from __future__ import annotations

import ipaddress
import socket
import struct

from proxy.flow.record import Address

SO_ORIGINAL_DST = 80  # linux/netfilter_ipv4.h
IP6T_SO_ORIGINAL_DST = 80  # linux/netfilter_ipv6/ip6_tables.h
SOL_IPV6 = getattr(socket, "SOL_IPV6", 41)
IP_TRANSPARENT = getattr(socket, "IP_TRANSPARENT", 19)
IPV6_TRANSPARENT = 75  # linux/in6.h


def original_destination(sock: socket.socket) -> tuple[Address, bool]:
    """The destination the client connected to, before any REDIRECT (Linux), and
    whether it was redirected (False: the socket's own local address).

    conntrack answers for connections it tracks but did not rewrite too, with
    the local address itself: that is a client connected to the listener.
    """
    dst, found = _conntrack_destination(sock)
    local = sock.getsockname()
    here = (str(local[0]), int(local[1]))
    if not found or dst == here:
        return here, False
    return dst, True


def _conntrack_destination(sock: socket.socket) -> tuple[Address, bool]:
    try:
        if sock.family == socket.AF_INET6:
            raw = sock.getsockopt(SOL_IPV6, IP6T_SO_ORIGINAL_DST, 28)
            port = struct.unpack_from("!H", raw, 2)[0]
            ip = ipaddress.IPv6Address(raw[8:24])
            host = str(ip.ipv4_mapped) if ip.ipv4_mapped is not None else str(ip)
            return (host, port), True
        raw = sock.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
        port = struct.unpack_from("!H", raw, 2)[0]
        return (str(ipaddress.IPv4Address(raw[4:8])), port), True
    except OSError:  # not tracked (or TPROXY): the local address is the destination
        return ("", 0), False


def listening_socket(host: str, port: int) -> socket.socket:
    """A bound, listening socket with ``IP_TRANSPARENT``, for TPROXY rules: it
    accepts connections to any address, each with its original destination as
    its local address (needs CAP_NET_ADMIN)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(SOL_IPV6, IPV6_TRANSPARENT, 1)
        else:
            sock.setsockopt(socket.SOL_IP, IP_TRANSPARENT, 1)
        sock.bind((host, port))
        sock.listen(1024)
        sock.setblocking(False)
    except OSError as e:
        sock.close()
        raise OSError(
            e.errno, f"transparent:tproxy listener on {host}:{port}: {e.strerror}"
        ) from None
    return sock
