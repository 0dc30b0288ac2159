"""The points in a flow's life that subscribers can watch, and hold.

Sinks subscribe to ``DONE``; a live view subscribes to all of them. At the
two holdable points, ``REQUEST`` (the request is about to go upstream) and
``RESPONSE_HEAD`` (the response head is about to go to the client), a
subscriber may hold the flow and resume it later with a ``Verdict``: go on
(with edits), answer in the server's place, or kill the flow. That one
mechanism is what breakpoints, addons and server replay use; while a flow is
held its connection reads no more from the side that would feed it, so
memory stays bounded.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from proxy.http1.events import Fields, RequestHead, ResponseHead


class HookKind(Enum):
    STARTED = "started"  # a request head arrived
    REQUEST = "request"  # the request is about to go upstream (holdable)
    RESPONSE_HEAD = "response_head"  # the response head is about to go out (holdable)
    RESPONSE = "response"  # the response went out whole
    ERROR = "error"  # the flow failed (its record says why)
    TUNNEL = "tunnel"  # the connection became a tunnel (CONNECT, 101 Upgrade)
    DONE = "done"  # the flow ended: its record is final
    # A message of a streaming protocol completed (gRPC): the flow is its own
    # record (kind ``grpc_message``), written as it comes, before DONE.
    MESSAGE = "message"
    # Bytes a TCP relay passed on, one read at a time (``proxy.flow.tcpdata``):
    # emitted only when a subscriber asks for it (addons' ``tcp_message``),
    # never written to the sinks.
    DATA = "data"
    # A WebSocket message held whole at a breakpoint, before it goes on
    # (holdable; offered only while a ``HoldSwitch`` arms it).
    WS_MESSAGE = "ws_message"


HOLDABLE = frozenset({HookKind.REQUEST, HookKind.RESPONSE_HEAD, HookKind.WS_MESSAGE})


class LiveFlow(Protocol):
    """A flow in progress, as subscribers see it at the holdable points."""

    @property
    def id(self) -> str: ...
    @property
    def url(self) -> str: ...  # where it goes (after rules)
    @property
    def request(self) -> RequestHead: ...  # as received
    @property
    def forward(self) -> RequestHead: ...  # as it will be sent (after rules)
    @property
    def response(self) -> ResponseHead | None: ...  # as sent to the client (once it went)
    @property
    def response_head(self) -> ResponseHead | None: ...  # the head held at RESPONSE_HEAD
    @property
    def body(self) -> bytes | None: ...  # the request body as it will be sent, when whole


@dataclass(frozen=True, slots=True)
class RequestEdit:
    """Changes to the request before it goes upstream; None leaves a part as it is."""

    method: bytes | None = None
    url: str | None = None  # absolute (scheme://host[:port]/path?query)
    headers: Fields | None = None
    body: bytes | None = None  # only where the body was offered whole (``LiveFlow.body``)


@dataclass(frozen=True, slots=True)
class ResponseEdit:
    """Changes to the response head before it goes to the client."""

    status: int | None = None
    headers: Fields | None = None


@dataclass(frozen=True, slots=True)
class MessageEdit:
    """A held WebSocket message: a new payload, or dropped (not forwarded)."""

    payload: bytes | None = None
    drop: bool = False


@dataclass(frozen=True, slots=True)
class LiveMessage:
    """A WebSocket message held at ``WS_MESSAGE``: whole, after the rules."""

    id: str  # "<flow>:<direction>:<index>", as its record's id
    flow: str  # the upgrade's flow id
    url: str  # the upgrade's URL as the client asked for it
    from_client: bool
    text: bool
    payload: bytes


@dataclass(frozen=True, slots=True)
class Proceed:
    edit: RequestEdit | ResponseEdit | MessageEdit | None = None
    note: str | None = None  # said in the record's warnings (a breakpoint that timed out)


@dataclass(frozen=True, slots=True)
class Reply:
    """Answer the client with this response instead of the server's."""

    status: int
    headers: Fields = ()
    body: bytes = b""
    reason: bytes | None = None  # None: the standard phrase (a replay keeps the recorded one)
    # Trailer fields after the body (gRPC's grpc-status): an HTTP/1.1 client
    # gets the body chunked with them (RFC 9112 §7.1.2), an HTTP/2 client a
    # trailing HEADERS frame with END_STREAM (RFC 9113 §8.1).
    trailers: Fields = ()
    # A ``101`` to ``Upgrade: websocket``: the session played to the client
    # after it (``proxy.layers.websocket.replayed``); None: no WebSocket.
    websocket: tuple[ScriptedMessage, ...] | None = None


@dataclass(frozen=True, slots=True)
class ScriptedMessage:
    """One message of a WebSocket session a ``Reply`` plays (server replay)."""

    from_client: bool
    data: bytes  # the payload (uncompressed)
    text: bool = False


@dataclass(frozen=True, slots=True)
class Kill:
    """End the flow now: the client connection is reset."""


Verdict = Proceed | Reply | Kill


@dataclass(frozen=True, slots=True)
class HookSettings:
    """Which hooks a session emits: ``notify`` as notices, ``hold`` as holdable."""

    notify: frozenset[HookKind] = frozenset()
    hold: frozenset[HookKind] = frozenset()
    # REQUEST is offered once the request body is whole (up to --max-body), so
    # a subscriber can read it (``LiveFlow.body``: server replay matches on it).
    request_body: bool = False
    # Holdable points armed while the proxy runs (a breakpoint set in the web UI).
    switch: HoldSwitch | None = None


class HoldSwitch:
    """Hook points armed at run time, read by every session at each point.

    A static ``HookSettings.hold`` makes every exchange stop at the point and
    wait for a verdict, and ``request_body`` buffers every request body; a
    breakpoint that is off should cost nothing, so the web UI arms its points
    here only while a breakpoint is set. Mutable on purpose: one object,
    shared by the subscriber that sets it and the sessions that read it.
    """

    __slots__ = ("kinds", "notify", "request_body")

    def __init__(self) -> None:
        self.kinds: frozenset[HookKind] = frozenset()
        self.request_body = False  # REQUEST waits for the whole body (to edit it)
        # Notices wanted now (STARTED while a browser watches the live list).
        self.notify: frozenset[HookKind] = frozenset()
