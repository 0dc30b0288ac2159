"""The WebSocket layer: what a ``101`` for ``Upgrade: websocket`` hands over to.

Each side's bytes go through its ``Direction`` (frames, messages, limits);
what comes out is forwarded (the original frames whenever no rule changed
the message), recorded (a ``websocket_message`` record per message through
``Hook(MESSAGE)``, the same path as gRPC messages) and given to the message
rules (``proxy.rules.wsrules``). Control frames are relayed as they come;
Close frames are read for the record (code, reason, who closed first).

A protocol violation by either peer fails the connection (RFC 6455 §7.1.7):
both peers get a Close with the code that names it (1002 protocol error,
1007 invalid payload, 1009 too big) and the connection's record says why.
The byte tunnel's half-close and TCP rules (toxics) do not apply here: a
WebSocket ends with its Close handshake, and either TCP side ending ends both.
"""

from __future__ import annotations

from collections.abc import Callable

from proxy.flow.hooks import HookKind, Verdict
from proxy.flow.record import TunnelInfo
from proxy.flow.wsinfo import WsClose, WsInfo, WsMessage
from proxy.layers.commands import (
    CLIENT,
    CloseConnection,
    Command,
    Conn,
    Hook,
    PauseReading,
    ResumeReading,
    SendData,
    SetTimer,
)
from proxy.layers.events import (
    ConnectionClosed,
    DataReceived,
    EofReceived,
    Event,
    HookResumed,
    Stopping,
    TimedOut,
    TimerFired,
)
from proxy.layers.websocket.direction import Complete, Control, Direction, Forward, Item, Msg
from proxy.layers.websocket.frames import Chunk, Opcode, WsError, close_payload, encode, parse_close
from proxy.layers.websocket.held import Held, live_message, verdict_of
from proxy.layers.websocket.records import message_hook, record_hook
from proxy.layers.websocket.replayed import ReplayedServer
from proxy.layers.websocket.wssetup import WsSetup
from proxy.rules.wsrules import DOWNSTREAM, UPSTREAM, WsInject, WsPlan, WsVerdict

TIMERS = 40  # timer tokens from here on: the ``when: open`` injections, by position


class WebSocketLayer:
    """Relays a WebSocket between the client and ``server``; ``done`` once it ended."""

    __slots__ = (
        "_base_hold", "_closing", "_held", "_next_at", "_pending", "_timers", "acted",
        "bytes_down", "bytes_up", "client_close", "clock", "closed_by", "done", "down", "error",
        "injected", "notes", "plan", "replayed", "server", "server_close", "setup", "up",
        "ws_close",
    )  # fmt: skip

    def __init__(
        self,
        server: Conn,
        setup: WsSetup,
        clock: Callable[[], float],
        plan: WsPlan | None,
        replayed: ReplayedServer | None = None,
    ) -> None:
        self.server = server
        # Server replay: no server connection; this plays the recorded server.
        self.replayed = replayed
        self.setup = setup
        self.clock = clock
        self.plan = plan if plan is not None and plan.rules else None
        s = setup.settings
        hold_up = self.plan is not None and self.plan.holds(UPSTREAM)
        hold_down = self.plan is not None and self.plan.holds(DOWNSTREAM)
        kept = max(setup.preview, setup.keep)
        self.up = Direction(True, setup.deflate, s, setup.limit, hold_up, kept)
        self.down = Direction(False, setup.deflate, s, setup.limit, hold_down, kept)
        self._base_hold = {True: hold_up, False: hold_down}
        self._held: Held | None = None  # a message at a breakpoint (``held``)
        self.bytes_up = self.bytes_down = 0
        self.client_close = self.server_close = ""  # as TunnelInfo: "fin", "reset", "proxy"...
        # The Close frames each side sent, and who sent the first.
        self.ws_close: dict[bool, WsClose] = {}
        self.closed_by: str | None = None
        self.error: str | None = None
        self.notes: list[str] = []
        self.acted: list[str] = []  # the rules that matched messages
        self.injected = 0
        self.done: TunnelInfo | None = None
        self._closing = False  # the proxy closed it: input is ignored
        self._next_at = {True: 0.0, False: 0.0}  # delayed messages hold back later ones
        self._pending: dict[bool, list[bytes]] = {True: [], False: []}  # injections waiting
        self._timers: list[tuple[str, WsInject, int]] = []  # (rule, inject, sent)

    def start(self, to_server: bytes = b"", to_client: bytes = b"") -> list[Command]:
        out: list[Command] = []
        if self.plan is not None:
            for k, (name, inject) in enumerate(self.plan.on_open()):
                self._timers.append((name, inject, 0))
                out.append(SetTimer(inject.delay_ms / 1000, TIMERS + k))
        if self.replayed is not None:
            self._from(False, self.replayed.opening(), out)
        if to_server:
            self._from(True, to_server, out)
        if to_client:
            self._from(False, to_client, out)
        return out

    def handle(self, event: Event) -> list[Command]:
        out: list[Command] = []
        if self.done is not None:
            return out
        if isinstance(event, DataReceived):
            if event.conn.is_client or event.conn == self.server:
                if self._held is not None:  # in flight before the pause: after it, in order
                    self._held.later.append((event.conn.is_client, event.data))
                else:
                    self._from(event.conn.is_client, event.data, out)
        elif isinstance(event, HookResumed):
            if event.kind is HookKind.WS_MESSAGE and self._held is not None:
                self._resumed(self._held, event.verdict, out)
        elif isinstance(event, EofReceived | ConnectionClosed):
            self._ended(event, out)
        elif isinstance(event, TimerFired):
            self._timer(event.token, out)
        elif isinstance(event, TimedOut):
            self._close_both(1001, "idle timeout", "timeout", out)
        elif isinstance(event, Stopping):
            self._close_both(1001, "proxy shutting down", "proxy", out)
        return out

    # -- frames in -------------------------------------------------------------------
    def _from(self, up: bool, data: bytes, out: list[Command]) -> None:
        if up:
            self.bytes_up += len(data)
        else:
            self.bytes_down += len(data)
        if self._closing:
            return
        d = self.up if up else self.down
        d.hold = self._base_hold[up] or self._armed()
        items, error = d.feed(data)
        self._items(up, d, items, error, out)

    def _items(
        self, up: bool, d: Direction, items: list[Item], error: WsError | None, out: list[Command]
    ) -> None:
        try:
            for i, item in enumerate(items):
                if self.done is not None:  # a rule closed it
                    return
                if isinstance(item, Forward):
                    self._send(up, item.data, out)
                elif isinstance(item, Control):
                    self._control(up, item.chunk, out)
                else:
                    assert isinstance(item, Complete)
                    self._complete(up, d, item.msg, out)
                    held = self._holding()
                    if held is not None:  # at a breakpoint: the rest waits
                        held.rest, held.error = items[i + 1 :], error
                        return
        except WsError as e:  # a malformed Close
            error = e
        if error is not None:
            self.error = f"{'client' if up else 'server'}: {error.why}"
            self._close_both(error.code, error.why, "proxy", out)

    def _send(self, up: bool, data: bytes, out: list[Command], delay: float = 0.0) -> None:
        if up and self.replayed is not None:
            self._to_replayed(self.replayed, data, out)
            return
        now = self.clock()
        at = max(self._next_at[up], now + delay if delay else 0.0)
        out.append(SendData(self.server if up else CLIENT, data, at if at > now else None))

    def _to_replayed(self, server: ReplayedServer, data: bytes, out: list[Command]) -> None:
        """The replayed server reads what the client sent, and answers."""
        answer = server.feed(data)
        if answer:
            self._from(False, answer, out)
        if server.closed and self.done is None:
            self._ended(EofReceived(self.server), out)

    def _control(self, up: bool, chunk: Chunk, out: list[Command]) -> None:
        if chunk.opcode is Opcode.CLOSE:
            code, reason = parse_close(chunk.payload)
            self.ws_close.setdefault(up, WsClose(code, reason))
            self.closed_by = self.closed_by or ("client" if up else "server")
        self._send(up, chunk.raw, out)

    # -- messages --------------------------------------------------------------------
    def _complete(self, up: bool, d: Direction, msg: Msg, out: list[Command]) -> None:
        verdict = None
        if msg.payload is not None:  # held whole: the rules decide, then a breakpoint
            payload = bytes(msg.payload)
            if self.plan is not None:
                verdict = self.plan.decide(UPSTREAM if up else DOWNSTREAM, msg.text, payload)
                self.notes += verdict.notes
                self.acted += [r for r in verdict.rules if r not in self.acted]
            if self._armed() and (verdict is None or not (verdict.drop or verdict.close)):
                self._hold(up, msg, payload, verdict, out)
                return
            self._carry_out(up, d, msg, payload, verdict or WsVerdict(), out)
        self._completed(up, d, msg, verdict, out)

    def _completed(
        self, up: bool, d: Direction, msg: Msg, verdict: WsVerdict | None, out: list[Command]
    ) -> None:
        out.append(self._record(up, msg, verdict))
        if not d.mid:
            for data in self._pending[up]:
                self._send(up, data, out)
            self._pending[up].clear()
        if verdict is not None and verdict.close is not None:
            code, reason = verdict.close
            self._close_both(code, reason, "rule", out)

    # -- breakpoints (``held``) ------------------------------------------------------------
    def _armed(self) -> bool:
        switch = self.setup.switch
        return switch is not None and HookKind.WS_MESSAGE in switch.kinds

    def _hold(
        self, up: bool, msg: Msg, payload: bytes, rules: WsVerdict | None, out: list[Command]
    ) -> None:
        self._held = Held(up, msg, payload, rules, [], None)
        live = live_message(self.setup.flow, self.setup.url, up, msg, payload)
        out.append(Hook(HookKind.WS_MESSAGE, live, hold=True))  # type: ignore[arg-type]
        out.append(PauseReading(CLIENT))
        out.append(PauseReading(self.server))

    def _resumed(self, held: Held, verdict: Verdict, out: list[Command]) -> None:
        self._held = None
        d = self.up if held.up else self.down
        out.append(ResumeReading(CLIENT))
        out.append(ResumeReading(self.server))
        decided = verdict_of(held, verdict)
        if decided is None:
            self._close_both(1008, "killed at a breakpoint", "proxy", out)
            return
        if decided.action in ("dropped", "replaced"):
            self.notes.append(f"message {held.msg.index} {decided.action} at a breakpoint")
        self._carry_out(held.up, d, held.msg, held.payload, decided, out)
        self._completed(held.up, d, held.msg, decided, out)
        self._items(held.up, d, held.rest, held.error, out)
        for up, data in held.later:
            again = self._holding()
            if again is not None:  # held again: the rest waits behind it
                again.later.append((up, data))
            elif self.done is None:
                self._from(up, data, out)

    def _holding(self) -> Held | None:
        return self._held

    def _carry_out(
        self, up: bool, d: Direction, msg: Msg, payload: bytes, v: WsVerdict, out: list[Command]
    ) -> None:
        if v.delay_ms:
            self._next_at[up] = max(self._next_at[up], self.clock()) + v.delay_ms / 1000
        if v.drop:
            d.diverted(msg)
        elif v.payload is not None:
            d.diverted(msg)
            self._send(up, d.reencode(msg, v.payload), out)
        else:
            original = d.original(msg)
            self._send(up, original if original is not None else d.reencode(msg, payload), out)
        for inject in v.injects:
            self._inject(v.rules[-1] if v.rules else "", inject, out)

    def _inject(self, rule: str, inject: WsInject, out: list[Command]) -> None:
        to_server = inject.to == "server"
        opcode = Opcode.TEXT if inject.text else Opcode.BINARY
        data = encode(opcode, inject.payload, to_server)
        d = self.up if to_server else self.down
        if d.mid:  # a message is half sent that way: after it
            self._pending[to_server].append(data)
        else:
            self._send(to_server, data, out, inject.delay_ms / 1000 if inject.on == "match" else 0)
        self.injected += 1
        at = self.clock()
        size = len(inject.payload)
        message = WsMessage(
            self.setup.flow,
            UPSTREAM if to_server else DOWNSTREAM,
            -self.injected,
            "text" if inject.text else "binary",
            size,
            len(data),
            1,
            False,
            inject.payload[: self.setup.preview],
            False,
            "injected",
            (rule,) if rule else (),
            at,
        )
        out.append(self._hook(message, f"injected:{self.injected}"))

    def _record(self, up: bool, msg: Msg, verdict: WsVerdict | None) -> Hook:
        return message_hook(self.setup, up, msg, verdict, self.clock())

    def _hook(self, message: WsMessage, suffix: str) -> Hook:
        return record_hook(self.setup, message, suffix)

    def _timer(self, token: int, out: list[Command]) -> None:
        k = token - TIMERS
        if self._closing or not 0 <= k < len(self._timers):
            return
        name, inject, sent = self._timers[k]
        self._inject(name, inject, out)
        sent += 1
        self._timers[k] = (name, inject, sent)
        if inject.every_ms and (inject.count is None or sent < inject.count):
            out.append(SetTimer(inject.every_ms / 1000, token))

    # -- ends ------------------------------------------------------------------------
    def _close_both(self, code: int, reason: str, why: str, out: list[Command]) -> None:
        """The proxy ends the WebSocket: a Close each way, then the connections."""
        if self._closing:
            return
        self._closing = True
        self.closed_by = self.closed_by or "proxy"
        body = close_payload(code, reason)
        if False not in self.ws_close:  # the client has had no Close yet
            self._send(False, encode(Opcode.CLOSE, body, False), out)
        if True not in self.ws_close:
            self._send(True, encode(Opcode.CLOSE, body, True), out)
        self.client_close = self.client_close or why
        self.server_close = self.server_close or why
        out.append(CloseConnection(self.server))
        out.append(CloseConnection(CLIENT))
        self._finish()

    def _ended(self, event: EofReceived | ConnectionClosed, out: list[Command]) -> None:
        """Either TCP side ended: the other is closed once what is queued went out."""
        reset = isinstance(event, ConnectionClosed) and event.reset
        how = "reset" if reset else "fin"
        if event.conn.is_client:
            self.client_close = self.client_close or how
            self.server_close = self.server_close or "proxy"
        elif event.conn == self.server:
            self.server_close = self.server_close or how
            self.client_close = self.client_close or "proxy"
        else:
            return
        out.append(CloseConnection(self.server, abort=reset))
        out.append(CloseConnection(CLIENT, abort=reset))
        self._finish()

    def _finish(self) -> None:
        if self.done is not None:
            return
        info = WsInfo(
            self.setup.extensions,
            self.setup.deflate is not None,
            self.up.index,
            self.down.index,
            self.ws_close.get(True),
            self.ws_close.get(False),
            self.closed_by,
            self.error,
            tuple(self.acted),
            self.injected,
            tuple(self.notes),
        )
        self.done = TunnelInfo(
            self.bytes_up, self.bytes_down, self.client_close, self.server_close, info
        )
