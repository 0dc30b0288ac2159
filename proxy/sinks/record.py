"""The flow record: one per completed exchange, tunnel or TCP relay.

A record is built once, when a flow ends, from plain values (bytes stay
bytes); turning it into JSON happens later, off the data path, in
``to_json``. The JSON shape is documented in docs/flow-log.md and carries
``schema`` so readers can tell versions apart. Bump ``SCHEMA_VERSION`` on any
incompatible change.
"""

from __future__ import annotations

import base64
import datetime as dt
import math
from dataclasses import dataclass
from typing import Any

from proxy.http1.events import Fields
from proxy.session.capture import CapturedBodies

SCHEMA_VERSION = 1

Address = tuple[str, int]


@dataclass(frozen=True, slots=True)
class Message:
    """One side of an HTTP exchange as it went over the wire to us."""

    headers: Fields
    body_size: int
    preview: bytes  # the first bytes of the body (length configurable)
    version: bytes = b"1.1"


@dataclass(frozen=True, slots=True)
class RequestInfo:
    method: bytes
    url: str
    message: Message


@dataclass(frozen=True, slots=True)
class ResponseInfo:
    status: int
    reason: bytes
    message: Message


@dataclass(frozen=True, slots=True)
class TunnelInfo:
    bytes_up: int  # client -> server
    bytes_down: int  # server -> client
    client_close: str  # "fin", "reset", "proxy" (we closed it), "timeout"
    server_close: str


@dataclass(frozen=True, slots=True)
class TlsSide:
    """TLS as negotiated on one side; certificate fields for the upstream side."""

    version: str | None = None
    cipher: str | None = None
    alpn: str | None = None
    sni: str | None = None
    offered_alpn: tuple[str, ...] = ()
    cert_subject: str | None = None
    cert_issuer: str | None = None
    cert_sans: tuple[str, ...] = ()
    cert_not_after: str | None = None


@dataclass(frozen=True, slots=True)
class TlsInfo:
    intercepted: bool  # we terminated the client's TLS and read the plaintext
    client: TlsSide | None = None
    server: TlsSide | None = None
    keylog: bool = False  # its secrets went to the key log (--keylog / SSLKEYLOGFILE)


@dataclass(frozen=True, slots=True)
class RulesInfo:
    """Which rules matched this flow and what they did (for "why didn't it fire?")."""

    matched: tuple[tuple[str, str, tuple[str, ...]], ...] = ()  # (rule, file:line, actions)
    warnings: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    detail: str | None = None


def tcp_rules_info(names: tuple[str, ...]) -> RulesInfo | None:
    """The TCP rules (toxics) that acted on a relay, for its record."""
    if not names:
        return None
    return RulesInfo(tuple((name, "", ("tcp",)) for name in names))


@dataclass(frozen=True, slots=True)
class Timings:
    """Absolute times (seconds since the epoch); None when a phase never happened."""

    request_head: float | None = None
    connected: float | None = None
    request_done: float | None = None
    response_head: float | None = None
    response_done: float | None = None


@dataclass(frozen=True, slots=True)
class FlowRecord:
    id: str
    kind: str  # "http", "tunnel", "websocket", "tcp"
    mode: str
    start: float
    end: float
    client: Address
    server: Address | None
    request: RequestInfo | None = None
    response: ResponseInfo | None = None
    tunnel: TunnelInfo | None = None
    timings: Timings = Timings()
    error: str | None = None
    tls: TlsInfo | None = None
    rules: RulesInfo | None = None
    bodies: CapturedBodies | None = None  # body files to write (--capture-bodies)

    def to_json(self) -> dict[str, Any]:
        return record_to_json(self)

    def to_record(self) -> FlowRecord:
        """A record is its own flow source (see ``proxy.session.commands.FlowSource``)."""
        return self


class _IsoClock:
    """UTC ISO 8601 with microseconds; the date and time of day are reused
    within a second (measured: a third of the cost of datetime per call).

    Records are encoded on one thread at a time (the sinks' writer, or
    ``tapproxy analyze``); a race would only recompute the prefix.
    """

    __slots__ = ("_prefix", "_second")

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def __call__(self, ts: float) -> str:
        # As datetime.fromtimestamp rounds: the fraction, half to even.
        frac_part, int_part = math.modf(ts)
        frac = round(frac_part * 1e6)
        second = int(int_part)
        if frac >= 1_000_000:
            second, frac = second + 1, frac - 1_000_000
        elif frac < 0:
            second, frac = second - 1, frac + 1_000_000
        if second != self._second:
            moment = dt.datetime.fromtimestamp(second, dt.UTC)
            self._prefix = moment.strftime("%Y-%m-%dT%H:%M:%S")
            self._second = second
        return f"{self._prefix}.{frac:06d}+00:00"


_iso = _IsoClock()


def _text(b: bytes) -> str:
    return b.decode("latin-1")


def preview_json(preview: bytes, body_size: int) -> dict[str, Any]:
    try:
        text, encoding = preview.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        text, encoding = base64.b64encode(preview).decode("ascii"), "base64"
    return {"data": text, "encoding": encoding, "truncated": len(preview) < body_size}


def _message_json(out: dict[str, Any], m: Message) -> dict[str, Any]:
    """``out`` (method and URL, or status and reason) with the message's fields added."""
    out["http_version"] = "HTTP/" + m.version.decode("latin-1")
    out["headers"] = [[k.decode("latin-1"), v.decode("latin-1")] for k, v in m.headers]
    out["body_size"] = m.body_size
    if m.preview:
        out["body_preview"] = preview_json(m.preview, m.body_size)
    return out


def _body_file(out: dict[str, Any], r: FlowRecord, request: bool) -> None:
    bodies = r.bodies
    if bodies is None or (bodies.request if request else bodies.response) is None:
        return
    out["body_file"] = bodies.path(r.id, request)
    if bodies.request_truncated if request else bodies.response_truncated:
        out["body_file_truncated"] = True


def _ms(t: float | None, start: float) -> float | None:
    return None if t is None else round((t - start) * 1000, 3)


def record_to_json(r: FlowRecord) -> dict[str, Any]:
    out: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "id": r.id,
        "kind": r.kind,
        "mode": r.mode,
        "start": _iso(r.start),
        "end": _iso(r.end),
        "duration_ms": round((r.end - r.start) * 1000, 3),
        "client": {"ip": r.client[0], "port": r.client[1]},
        "server": None if r.server is None else {"ip": r.server[0], "port": r.server[1]},
    }
    t = r.timings
    out["timings_ms"] = {
        "request_head": _ms(t.request_head, r.start),
        "connected": _ms(t.connected, r.start),
        "request_done": _ms(t.request_done, r.start),
        "response_head": _ms(t.response_head, r.start),
        "response_done": _ms(t.response_done, r.start),
    }
    if r.request is not None:
        req = {"method": _text(r.request.method), "url": r.request.url}
        out["request"] = _message_json(req, r.request.message)
        _body_file(req, r, True)
    if r.response is not None:
        resp = {"status": r.response.status, "reason": _text(r.response.reason)}
        out["response"] = _message_json(resp, r.response.message)
        _body_file(resp, r, False)
    if r.tunnel is not None:
        tu = r.tunnel
        out["tunnel"] = {
            "bytes_client_to_server": tu.bytes_up,
            "bytes_server_to_client": tu.bytes_down,
            "client_close": tu.client_close,
            "server_close": tu.server_close,
        }
    if r.tls is not None:
        out["tls"] = tls_json(r.tls)
    if r.rules is not None:
        out["rules"] = {
            "matched": [
                {"rule": name, "source": source, "actions": list(actions)}
                for name, source, actions in r.rules.matched
            ],
            "warnings": list(r.rules.warnings),
            "tags": list(r.rules.tags),
            "detail": r.rules.detail,
        }
    out["error"] = r.error
    return out


def _side_json(side: TlsSide) -> dict[str, Any]:
    out: dict[str, Any] = {
        "version": side.version,
        "cipher": side.cipher,
        "alpn": side.alpn,
        "sni": side.sni,
    }
    if side.offered_alpn:
        out["offered_alpn"] = list(side.offered_alpn)
    if side.cert_subject is not None:
        out["certificate"] = {
            "subject": side.cert_subject,
            "issuer": side.cert_issuer,
            "sans": list(side.cert_sans),
            "not_after": side.cert_not_after,
        }
    return out


def tls_json(t: TlsInfo) -> dict[str, Any]:
    return {
        "intercepted": t.intercepted,
        "keylog": t.keylog,
        "client": None if t.client is None else _side_json(t.client),
        "server": None if t.server is None else _side_json(t.server),
    }
