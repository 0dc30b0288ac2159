"""Next proxies as users write them: ``http[s]://[user:pass@]host:port`` or ``socks5://...``.

Parsed once and cached (``parse_via``); records name a route without its
credentials (``redact``). ``Bypass`` is the ``NO_PROXY``-style list of hosts
that never go through the next proxy. Pure functions of text: the rules
loader validates ``route: {via: ...}`` with them, the session routes with
them, the shell connects with them.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import unquote

DIRECT = "direct"
SCHEMES = ("http", "https", "socks5", "socks5h")
_URL = re.compile(
    r"(?P<scheme>[a-z0-9]+)://(?:(?P<user>[^:@/]*)(?::(?P<pw>[^@/]*))?@)?"
    r"(?P<host>\[[0-9a-fA-F:.]+\]|[^:/@\[\]]+):(?P<port>[0-9]{1,5})/?"
)


@dataclass(frozen=True, slots=True)
class NextProxy:
    """A parsed ``via``: the next proxy to go through."""

    scheme: str  # "http", "https" or "socks5"
    host: str  # without brackets for IPv6
    port: int
    user: str | None = None
    password: str | None = None

    @property
    def url(self) -> str:
        """``scheme://host:port`` without the credentials (for records and messages)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def is_http(self) -> bool:
        """An HTTP proxy (CONNECT, absolute-form), spoken in the clear or over TLS."""
        return self.scheme in ("http", "https")

    @property
    def tls(self) -> bool:
        """TLS to the next proxy itself (``https://``)."""
        return self.scheme == "https"


@functools.lru_cache(maxsize=64)
def parse_via(text: str) -> NextProxy:
    """``http[s]://[user:pass@]host:port`` or ``socks5://...``; ``ValueError`` says why not."""
    m = _URL.fullmatch(text.strip())
    if m is None:
        raise ValueError(
            f"{text!r}: expected http[s]://host:port or socks5://[user:pass@]host:port"
        )
    scheme = m.group("scheme")
    if scheme not in SCHEMES:
        raise ValueError(f"{text!r}: unknown scheme {scheme!r}; expected http, https or socks5")
    port = int(m.group("port"))
    if not 0 < port < 65536:
        raise ValueError(f"{text!r}: port {port} out of range")
    host = m.group("host")
    host = host[1:-1] if host.startswith("[") else host
    user = m.group("user")
    pw = m.group("pw")
    return NextProxy(
        "socks5" if scheme == "socks5h" else scheme,
        host.lower(),
        port,
        unquote(user) if user is not None else None,
        unquote(pw) if pw is not None else None,
    )


def with_auth(via: str, user_pass: str | None) -> str:
    """``via`` with ``user:pass`` (``--upstream-auth``) unless it carries its own."""
    if not user_pass or "@" in via:
        return via
    scheme, _, rest = via.partition("://")
    return f"{scheme}://{user_pass}@{rest}"


def redact(via: str | None) -> str:
    """How records name a route: ``direct`` or the next proxy's URL without credentials."""
    if via is None:
        return DIRECT
    try:
        return parse_via(via).url
    except ValueError:
        return "?"


class Bypass:
    """``NO_PROXY``-style list: hosts that never go through the next proxy.

    Entries are separated by commas or spaces, as curl and wget read them:
    ``*`` (every host), a domain (``example.com`` or ``.example.com``: the
    domain and its subdomains), an IP address, or a CIDR block
    (``10.0.0.0/8``); each optionally with ``:port``.
    """

    __slots__ = ("_all", "_domains", "_nets")

    def __init__(self, text: str) -> None:
        self._all = False
        self._domains: list[tuple[str, int | None]] = []
        self._nets: list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, int | None]] = []
        for entry in re.split(r"[,\s]+", text.strip()):
            if entry:
                self._add(entry.lower())

    def _add(self, entry: str) -> None:
        if entry == "*":
            self._all = True
            return
        port: int | None = None
        m = re.fullmatch(r"(\[[0-9a-f:.]+\]|[^:]+):([0-9]{1,5})", entry)
        if m is not None:
            entry, port = m.group(1), int(m.group(2))
        entry = entry.strip("[]")
        try:
            self._nets.append((ipaddress.ip_network(entry, strict=False), port))
        except ValueError:
            self._domains.append((entry.lstrip("*").lstrip("."), port))

    def __bool__(self) -> bool:
        return self._all or bool(self._domains) or bool(self._nets)

    def matches(self, host: str, port: int) -> bool:
        if self._all:
            return True
        host = host.lower().strip("[]")
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            return any(
                (p is None or p == port) and (host == d or host.endswith("." + d))
                for d, p in self._domains
            )
        return any((p is None or p == port) and ip in net for net, p in self._nets)
