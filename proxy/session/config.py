"""Per-listener settings a session needs, passed explicitly (no globals)."""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from proxy.flow.hooks import HookSettings
from proxy.flow.record import Address, TlsSide
from proxy.grpc.settings import GrpcSettings
from proxy.http1 import DEFAULT_LIMITS, Limits
from proxy.layers.websocket.settings import WsSettings
from proxy.rules import RuleSet
from proxy.session.capture import CaptureConfig

_ID_PREFIX = os.urandom(4).hex()  # per process, so workers never collide
_id_counter = itertools.count(1)


def _new_prefix() -> None:
    """A forked worker must not repeat its parent's (or a sibling's) ids."""
    global _ID_PREFIX, _id_counter
    _ID_PREFIX = os.urandom(4).hex()
    _id_counter = itertools.count(1)


os.register_at_fork(after_in_child=_new_prefix)


def new_flow_id() -> str:
    """A unique flow id: a random per-process prefix and a counter.

    Cheaper than os.urandom per flow (a syscall on every request).
    """
    return f"{_ID_PREFIX}{next(_id_counter):08x}"


@dataclass(frozen=True, slots=True)
class Upstream:
    """A fixed upstream (reverse and tcp modes)."""

    scheme: str  # "http", "https" or "tcp"
    host: str
    port: int
    sni: str | None = None  # for https: the name to send and verify (default: host)
    h2c: bool = False  # plain HTTP/2 with prior knowledge (reverse:h2c://)


@dataclass(frozen=True, slots=True)
class SessionConfig:
    mode: str = "regular"  # label used in records, e.g. "reverse:http://h:9000"
    upstream: Upstream | None = None  # set for reverse mode
    keep_host: bool = False  # reverse mode: forward the client's Host unchanged
    # (host, port) pairs the proxy listens on: requests to them would loop.
    own_addresses: frozenset[tuple[str, int]] = frozenset()
    preview_bytes: int = 256
    limits: Limits = DEFAULT_LIMITS
    max_client_backlog: int = 256 * 1024  # unprocessed client bytes before pausing reads
    # Intercept a CONNECT to (host, port)? None: never (plain tunnels).
    intercept: Callable[[str, int], bool] | None = None
    # For a session inside an intercepted TLS connection: the client side's TLS.
    client_tls: TlsSide | None = None
    # Hosts answered by the proxy itself (http://tapproxy.ca/): path -> response.
    local_hosts: frozenset[str] = frozenset()
    local_responder: Callable[[str, bytes], bytes] | None = None
    # The rules in force (reloads swap them); None: no rules at all.
    rules: Callable[[], RuleSet | None] | None = None
    max_body: int = 10 * 1024 * 1024  # a body is buffered for rules up to this
    capture: CaptureConfig = field(default_factory=CaptureConfig)
    keylog: bool = False  # TLS secrets of both sides go to a key log
    http2: bool = True  # clients may speak HTTP/2 (h2c preface, ALPN h2)
    # base64 of "user:pass" when --proxy-auth is on (forward modes only).
    proxy_auth: bytes | None = None
    # Lifecycle hooks subscribers want beyond DONE (notices, and holdable points).
    hooks: HookSettings = field(default_factory=HookSettings)
    # The next proxy for host:port ("http://..." / "socks5://..."), None: direct
    # (proxy.session.routing.Router); None here: always direct.
    route: Callable[[str, int], str | None] | None = None
    # Transparent mode: where the client was going (SO_ORIGINAL_DST), for records.
    original_dst: Address | None = None
    # gRPC calls: observed per message, decoded with these schemas (proxy.grpc).
    grpc: GrpcSettings = field(default_factory=GrpcSettings)
    # WebSocket limits (proxy.layers.websocket); messages are held for rules up to max_body.
    websocket: WsSettings = field(default_factory=WsSettings)
    clock: Callable[[], float] = field(default=time.time)
    new_id: Callable[[], str] = field(default=new_flow_id)
