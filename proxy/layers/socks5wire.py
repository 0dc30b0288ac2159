"""SOCKS5 on the wire (RFC 1928, RFC 1929): what both of our sides need.

The listener (``proxy.layers.socks5``) reads greetings and requests and
writes replies; the chaining client (``proxy.server.chain``) writes
greetings and requests and reads replies. Both use these encoders and the
reply codes' names.
"""

from __future__ import annotations

import ipaddress
from enum import IntEnum

VERSION = 5
AUTH_VERSION = 1  # RFC 1929 §2: the version of the username/password subnegotiation


class Method(IntEnum):
    """Authentication methods (RFC 1928 §3)."""

    NO_AUTH = 0x00
    USER_PASS = 0x02
    NO_ACCEPTABLE = 0xFF


class Cmd(IntEnum):
    """Request commands (RFC 1928 §4)."""

    CONNECT = 0x01
    BIND = 0x02
    UDP_ASSOCIATE = 0x03


class Atyp(IntEnum):
    """Address types (RFC 1928 §5)."""

    IPV4 = 0x01
    DOMAIN = 0x03
    IPV6 = 0x04


class Reply(IntEnum):
    """Reply codes (RFC 1928 §6)."""

    SUCCEEDED = 0x00
    GENERAL_FAILURE = 0x01
    NOT_ALLOWED = 0x02
    NETWORK_UNREACHABLE = 0x03
    HOST_UNREACHABLE = 0x04
    CONNECTION_REFUSED = 0x05
    TTL_EXPIRED = 0x06
    COMMAND_NOT_SUPPORTED = 0x07
    ADDRESS_TYPE_NOT_SUPPORTED = 0x08


REPLY_TEXT = {
    Reply.SUCCEEDED: "succeeded",
    Reply.GENERAL_FAILURE: "general SOCKS server failure",
    Reply.NOT_ALLOWED: "connection not allowed by ruleset",
    Reply.NETWORK_UNREACHABLE: "network unreachable",
    Reply.HOST_UNREACHABLE: "host unreachable",
    Reply.CONNECTION_REFUSED: "connection refused",
    Reply.TTL_EXPIRED: "TTL expired",
    Reply.COMMAND_NOT_SUPPORTED: "command not supported",
    Reply.ADDRESS_TYPE_NOT_SUPPORTED: "address type not supported",
}


def reply_text(code: int) -> str:
    try:
        return f"{REPLY_TEXT[Reply(code)]} (reply 0x{code:02x})"
    except ValueError:
        return f"unknown reply 0x{code:02x}"


def encode_address(host: str, port: int) -> bytes:
    """ATYP, address and port: IP literals as such, anything else as a domain
    name for the proxy to resolve (remote DNS, RFC 1928 §5)."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        name = host.encode("idna")
        if not 0 < len(name) < 256:
            raise ValueError(f"host name of {len(name)} bytes cannot be sent over SOCKS5") from None
        return bytes((Atyp.DOMAIN, len(name))) + name + port.to_bytes(2, "big")
    atyp = Atyp.IPV4 if ip.version == 4 else Atyp.IPV6
    return bytes((atyp,)) + ip.packed + port.to_bytes(2, "big")


def address_length(data: bytes) -> int | None:
    """Bytes of the ATYP-address-port at the start of ``data``; None: need more.

    ``ValueError`` for an unknown address type."""
    if not data:
        return None
    atyp = data[0]
    if atyp == Atyp.IPV4:
        return 1 + 4 + 2
    if atyp == Atyp.IPV6:
        return 1 + 16 + 2
    if atyp == Atyp.DOMAIN:
        return None if len(data) < 2 else 1 + 1 + data[1] + 2
    raise ValueError(f"address type 0x{atyp:02x}")


def decode_address(data: bytes) -> tuple[str, int]:
    """The (host, port) of a complete ATYP-address-port (``address_length`` bytes)."""
    atyp, port = data[0], int.from_bytes(data[-2:], "big")
    if atyp == Atyp.IPV4:
        return str(ipaddress.IPv4Address(data[1:5])), port
    if atyp == Atyp.IPV6:
        return str(ipaddress.IPv6Address(data[1:17])), port
    return data[2:-2].decode("idna").lower(), port


def reply(code: Reply, bound: tuple[str, int] = ("0.0.0.0", 0)) -> bytes:
    """A reply to a request: VER REP RSV ATYP BND.ADDR BND.PORT (RFC 1928 §6)."""
    return bytes((VERSION, code, 0)) + encode_address(*bound)


def user_pass_request(user: str, password: str) -> bytes:
    """RFC 1929 §2: VER ULEN UNAME PLEN PASSWD."""
    u, p = user.encode(), password.encode()
    if len(u) > 255 or len(p) > 255:
        raise ValueError("SOCKS5 user name and password are at most 255 bytes each")
    return bytes((AUTH_VERSION, len(u))) + u + bytes((len(p),)) + p
