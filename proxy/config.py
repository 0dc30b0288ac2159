"""Listener modes as the command line spells them (mitmproxy's syntax).

``regular`` (forward proxy), ``reverse:http://host:port``, ``tcp:host:port``,
``upstream:http[s]://host:port`` (a forward proxy that goes through a next
proxy; ``socks5://`` too), ``socks5`` (a SOCKS5 listener), ``transparent``
(connections redirected by iptables/nftables; ``transparent:tproxy`` for
TPROXY rules; docs/modes.md), each
optionally suffixed ``@[host:]port`` to choose its own listen address.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from proxy.session.config import Upstream
from proxy.via import parse_via


class ConfigError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class ModeSpec:
    kind: str  # "regular", "reverse", "tcp", "upstream", "socks5", "transparent"
    upstream: Upstream | None
    host: str
    port: int
    label: str  # the mode as written, without the @ suffix
    via: str | None = None  # upstream mode: the next proxy's URL
    tproxy: bool = False  # transparent:tproxy: the listener has IP_TRANSPARENT


_LISTEN = re.compile(r"(?:(.+):)?([0-9]{1,5})")
_REVERSE = re.compile(r"(https?|h2c)://(\[[0-9a-fA-F:.]+\]|[^/:\[\]]+)(?::([0-9]{1,5}))?/?")
_TCP = re.compile(r"(\[[0-9a-fA-F:.]+\]|[^:\[\]]+):([0-9]{1,5})")


def _port(text: str, what: str) -> int:
    port = int(text)
    if not 0 <= port < 65536:
        raise ConfigError(f"{what}: port {port} out of range")
    return port


def _host(text: str) -> str:
    return text[1:-1] if text.startswith("[") else text


def parse_mode(text: str, default_host: str, default_port: int) -> ModeSpec:
    spec, host, port = text, default_host, default_port
    if "@" in text:
        spec, listen = text.rsplit("@", 1)
        m = _LISTEN.fullmatch(listen)
        if m is None:
            raise ConfigError(f"mode {text!r}: expected @port or @host:port after the mode")
        host = _host(m.group(1)) if m.group(1) else default_host
        port = _port(m.group(2), f"mode {text!r}")
    if spec == "regular":
        return ModeSpec("regular", None, host, port, spec)
    if spec.startswith("reverse:"):
        m = _REVERSE.fullmatch(spec[len("reverse:") :])
        if m is None:
            raise ConfigError(
                f"mode {text!r}: expected reverse:http://, https:// or h2c://host[:port]"
            )
        scheme = m.group(1)
        up_port = _port(m.group(3), text) if m.group(3) else (443 if scheme == "https" else 80)
        # h2c: plain HTTP, spoken as HTTP/2 with prior knowledge (RFC 9113 §3.3).
        up = Upstream("http" if scheme == "h2c" else scheme, _host(m.group(2)), up_port)
        if scheme == "h2c":
            up = replace(up, h2c=True)
        return ModeSpec("reverse", up, host, port, spec)
    if spec.startswith("tcp:"):
        m = _TCP.fullmatch(spec[len("tcp:") :])
        if m is None:
            raise ConfigError(f"mode {text!r}: expected tcp:host:port")
        up = Upstream("tcp", _host(m.group(1)), _port(m.group(2), text))
        return ModeSpec("tcp", up, host, port, spec)
    if spec.startswith("upstream:"):
        via = spec[len("upstream:") :]
        try:
            parse_via(via)
        except ValueError as e:
            raise ConfigError(f"mode {text!r}: {e}") from None
        return ModeSpec("upstream", None, host, port, spec, via)
    if spec in ("socks5", "transparent"):
        return ModeSpec(spec, None, host, port, spec)
    if spec == "transparent:tproxy":
        return ModeSpec("transparent", None, host, port, spec, tproxy=True)
    raise ConfigError(
        f"unknown mode {text!r}; expected regular, reverse:URL, tcp:HOST:PORT, upstream:URL, "
        "socks5 or transparent"
    )


def parse_modes(texts: list[str], default_host: str, default_port: int) -> list[ModeSpec]:
    modes = [parse_mode(t, default_host, default_port) for t in (texts or ["regular"])]
    seen: dict[tuple[str, int], str] = {}
    for m in modes:
        if m.port and (m.host, m.port) in seen:
            raise ConfigError(
                f"modes {seen[(m.host, m.port)]!r} and {m.label!r} both listen on "
                f"{m.host}:{m.port}; give one its own port with @PORT"
            )
        seen[(m.host, m.port)] = m.label
    return modes
