"""An HTTP/1 session whose server connections may be shared HTTP/2 ones.

A reverse listener for an https or h2c server reaches it over HTTP/2 when
ALPN (or prior knowledge) says so, even for HTTP/1.1 clients: the sessions
of the connection share those server connections through an
``UpstreamMux`` (``proxy.layers.http2.upstream``). ``handle_muxed`` drives
the session and the mux together for one event: the mux takes the events
of the connections it owns and its keepalive timer, the session the rest;
then the mux's wakes go to the session and its reopens are carried out.
A session handing the connection on goes back to the layer stack
(``Switcher``, ``proxy.layers.root.ClientLayers``).
"""

from __future__ import annotations

from typing import Protocol

from proxy.layers.commands import Command, Intercept, StartHttp2, StartTunnel
from proxy.layers.events import ConnectionClosed, Event, TimerFired
from proxy.layers.http2.upstream import KEEPALIVE_TOKEN, UpstreamMux
from proxy.session.http import HttpSession

SWITCHES = (StartTunnel, Intercept, StartHttp2)  # a session's last command handing it on


class Switcher(Protocol):
    """The layer stack a session hands the connection on to."""

    def switch(self, session: HttpSession, out: list[Command]) -> list[Command]: ...


def handle_muxed(
    stack: Switcher, session: HttpSession, mux: UpstreamMux, event: Event
) -> list[Command]:
    """An HTTP/1 session whose server may be HTTP/2: shared connections' events
    go to the mux first, and what it decides is carried out on the session."""
    conn = getattr(event, "conn", None)
    if conn is not None and not conn.is_client and mux.owns(conn):
        out = mux.handle(event)
        mux.keepalive(out)
    elif type(event) is TimerFired and event.token == KEEPALIVE_TOKEN:
        out = []
        mux.keepalive(out, fired=True)
    else:
        out = session.handle(event)
        if isinstance(event, ConnectionClosed) and event.conn.is_client:
            out += mux.close_all()
        if out and type(out[-1]) in SWITCHES:
            return stack.switch(session, out)
    while True:
        wakes, reopen = mux.drain()
        if not wakes and not reopen:
            mux.flush(out)
            return out
        for _token, woken in wakes:
            out += session.handle(woken)
        key = session.server.key
        if reopen and key is not None:
            session.server.open(key, out)
