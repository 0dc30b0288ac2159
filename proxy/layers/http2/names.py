"""Which stream an event is for: the names a stream's session uses, made the layer's.

Every stream of an HTTP/2 client connection runs its own session, and the
sessions name what they use as if each were alone: timers by a token,
server connections by a ``Conn``, hooks by nothing at all. ``StreamNames``
rewrites their commands so that each answer comes back to the right
stream: timers get a token of the layer's, hooks the stream id, server
connections are remembered by the stream that opened them, and what only
the layer may do to the client connection (pause, resume, close) is
dropped.
"""

from __future__ import annotations

import itertools

from proxy.layers.commands import (
    CloseConnection,
    Command,
    Conn,
    Hook,
    OpenServer,
    PauseReading,
    ResumeReading,
    SetTimer,
)

_CLIENT_ONLY = (PauseReading, ResumeReading, CloseConnection)


class StreamNames:
    __slots__ = ("servers", "timers", "tokens")

    def __init__(self) -> None:
        self.servers: dict[Conn, int] = {}  # server connection -> its stream
        self.timers: dict[int, tuple[int, int]] = {}  # our token -> (stream, its token)
        self.tokens = itertools.count(1000)

    def commands(self, commands: list[Command], stream: int) -> list[Command]:
        """A stream session's commands, named for the connection's layer."""
        out: list[Command] = []
        for cmd in commands:
            kind = type(cmd)
            if kind is SetTimer:
                token = next(self.tokens)
                self.timers[token] = (stream, cmd.token)  # type: ignore[union-attr]
                out.append(SetTimer(cmd.seconds, token))  # type: ignore[union-attr]
            elif kind is Hook:
                out.append(Hook(cmd.kind, cmd.flow, stream, cmd.hold))  # type: ignore[union-attr]
            elif kind is OpenServer:
                self.servers[cmd.conn] = stream  # type: ignore[union-attr]
                out.append(cmd)
            elif kind in _CLIENT_ONLY and cmd.conn.is_client:  # type: ignore[union-attr]
                continue  # the client connection is the layer's, not a stream's
            else:
                out.append(cmd)
        return out

    def timer(self, token: int) -> tuple[int, int]:
        """(stream, the session's own token) of a timer that fired; (0, 0): unknown."""
        return self.timers.pop(token, (0, 0))
