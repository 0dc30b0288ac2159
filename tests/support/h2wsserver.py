"""An HTTP/2 server that takes WebSockets over HTTP/2 (RFC 8441), for the live tests.

h2c with prior knowledge on loopback. It advertises
``SETTINGS_ENABLE_CONNECT_PROTOCOL`` (§3); ``GET`` gets ``200 ok``; an
extended CONNECT for ``websocket`` gets ``200`` and an echo of every
message (wsproto's frames, server side: client frames must be masked), a
Close answered with a Close and END_STREAM (§6). The header blocks it
received are kept (``requests``) so a test can see what the proxy sent.
"""

from __future__ import annotations

import asyncio
import contextlib

import h2.events as ev
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.settings import SettingCodes
from wsproto.frame_protocol import FrameProtocol, Opcode

Header = tuple[bytes, bytes]


class H2WsServer:
    def __init__(self) -> None:
        self.requests: list[list[Header]] = []
        self.pending: dict[int, bytearray] = {}  # what the peer's windows hold back
        self.ending: set[int] = set()  # END_STREAM behind what is pending
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        h2 = H2Connection(H2Configuration(client_side=False, header_encoding=None))
        h2.initiate_connection()
        h2.update_settings({SettingCodes.ENABLE_CONNECT_PROTOCOL: 1})
        sockets: dict[int, FrameProtocol] = {}
        writer.write(h2.data_to_send())
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while data := await reader.read(65536):
                for event in h2.receive_data(data):
                    self._event(h2, event, sockets)
                writer.write(h2.data_to_send())
                await writer.drain()
        writer.close()

    def _send(self, h2: H2Connection, stream: int, data: bytes, end: bool = False) -> None:
        """Data as the windows allow (RFC 9113 §5.2); the rest waits for WINDOW_UPDATE."""
        self.pending.setdefault(stream, bytearray()).extend(data)
        if end:
            self.ending.add(stream)
        self._flush(h2, stream)

    def _flush(self, h2: H2Connection, stream: int) -> None:
        queue = self.pending.get(stream)
        while queue:
            n = min(len(queue), h2.local_flow_control_window(stream), h2.max_outbound_frame_size)
            if n <= 0:
                return
            h2.send_data(stream, bytes(queue[:n]))
            del queue[:n]
        if stream in self.ending:
            self.ending.discard(stream)
            h2.end_stream(stream)

    def _event(self, h2: H2Connection, event: object, sockets: dict[int, FrameProtocol]) -> None:
        if isinstance(event, ev.WindowUpdated):
            for stream in list(self.pending):
                self._flush(h2, stream)
        elif isinstance(event, ev.RequestReceived):
            headers = list(event.headers)
            self.requests.append(headers)
            pseudo = dict(h for h in headers if h[0].startswith(b":"))
            if pseudo.get(b":protocol") == b"websocket":
                h2.send_headers(event.stream_id, [(b":status", b"200")])
                sockets[event.stream_id] = FrameProtocol(client=False, extensions=[])
            else:
                h2.send_headers(event.stream_id, [(b":status", b"200")])
                h2.send_data(event.stream_id, b"ok", end_stream=True)
        elif isinstance(event, ev.DataReceived):
            h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            ws = sockets.get(event.stream_id)
            if ws is not None:
                ws.receive_bytes(event.data)
                for frame in ws.received_frames():
                    self._frame(h2, event.stream_id, ws, frame)

    def _frame(self, h2: H2Connection, stream: int, ws: FrameProtocol, frame: object) -> None:
        opcode = frame.opcode  # type: ignore[attr-defined]
        payload = frame.payload  # type: ignore[attr-defined]
        if opcode is Opcode.CLOSE:
            code, reason = payload
            self._send(h2, stream, bytes(ws.close(code, reason)), end=True)
        elif opcode is Opcode.PING:
            self._send(h2, stream, bytes(ws.pong(payload)))
        elif opcode in (Opcode.TEXT, Opcode.BINARY, Opcode.CONTINUATION):
            fin = frame.frame_finished and frame.message_finished  # type: ignore[attr-defined]
            self._send(h2, stream, bytes(ws.send_data(payload, fin)))
