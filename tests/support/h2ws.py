"""A WebSocket client over HTTP/2 (RFC 8441), for the live tests.

``H2WebSocket.connect`` opens an HTTP/2 connection (h2c with prior
knowledge, TLS with ALPN ``h2``, or TLS inside an HTTP/1.1 CONNECT to a
forward proxy), checks that the server advertised
``SETTINGS_ENABLE_CONNECT_PROTOCOL`` (§3), and sends the extended CONNECT
(§4). The frames on the stream are wsproto's (``FrameProtocol``, client
side: masked, §5), with permessage-deflate when the server accepted it.
Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from dataclasses import dataclass

import h2.events as ev
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.settings import SettingCodes
from wsproto.extensions import PerMessageDeflate
from wsproto.frame_protocol import Frame, FrameProtocol, Opcode

Header = tuple[bytes, bytes]


@dataclass
class Message:
    """A whole message, or a control frame: opcode name and payload."""

    kind: str  # text, binary, ping, pong, close
    data: str | bytes | tuple[int, str]
    frames: int = 1


async def _tunnel(
    port: int, target: str, tls: ssl.SSLContext, name: str
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """TLS to ``target`` through an HTTP/1.1 CONNECT to the proxy on ``port``."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    assert head.startswith(b"HTTP/1.1 200"), head
    await writer.start_tls(tls, server_hostname=name)
    return reader, writer


class H2WebSocket:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        config = H2Configuration(client_side=True, header_encoding=None)
        self.h2 = H2Connection(config)
        self.status: int | None = None
        self.headers: list[Header] = []
        self.body = b""
        self.ended = False  # END_STREAM from the server
        self.reset: int | None = None  # RST_STREAM's code
        self.closed = False  # the TCP connection ended
        self.proto: FrameProtocol | None = None
        self.frames: list[Frame] = []
        self.settings = False  # the server's SETTINGS came
        self.stream = 1  # the WebSocket's
        self.primed: int | None = None  # the status of a GET sent first, on stream 1

    @classmethod
    async def connect(
        cls,
        port: int,
        authority: str,
        path: str,
        scheme: str = "http",
        tls: ssl.SSLContext | None = None,
        via_connect: bool = False,
        extra: list[Header] | None = None,
        prime: str | None = None,
    ) -> H2WebSocket:
        """The extended CONNECT, answered (``status``); frames can flow on a 200.

        ``prime``: a path to GET first on the same connection (as a browser
        loads its page before the page opens a WebSocket)."""
        if via_connect:
            assert tls is not None
            host = authority.rsplit(":", 1)[0]
            reader, writer = await _tunnel(port, authority, tls, host)
        else:
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=tls, server_hostname="localhost" if tls else None
            )
        self = cls(reader, writer)
        self.h2.initiate_connection()
        self._flush()
        while not self.settings:
            await self._pump()
        if prime is not None:
            get = [(b":method", b"GET"), (b":scheme", scheme.encode()),
                   (b":path", prime.encode()), (b":authority", authority.encode())]  # fmt: skip
            self.stream = 3  # the WebSocket's, after the GET's
            self.h2.send_headers(1, get, end_stream=True)
            self._flush()
            while self.primed is None:
                await self._pump()
        assert self.h2.remote_settings[SettingCodes.ENABLE_CONNECT_PROTOCOL] == 1
        headers: list[Header] = [
            (b":method", b"CONNECT"),
            (b":protocol", b"websocket"),
            (b":scheme", scheme.encode()),
            (b":path", path.encode()),
            (b":authority", authority.encode()),
            (b"sec-websocket-version", b"13"),
            *(extra or []),
        ]
        self.h2.send_headers(self.stream, headers)
        self._flush()
        while self.status is None and self.reset is None:
            await self._pump()
        return self

    def _switched(self) -> None:
        """The 200: frames from now on (in the same read as the head, too)."""
        extensions = []
        accepted = self.header(b"sec-websocket-extensions")
        if accepted is not None and accepted.startswith(b"permessage-deflate"):
            deflate = PerMessageDeflate()
            deflate.finalize(accepted.decode())
            extensions.append(deflate)
        self.proto = FrameProtocol(client=True, extensions=extensions)

    def header(self, name: bytes) -> bytes | None:
        return next((v for k, v in self.headers if k == name), None)

    @property
    def deflate(self) -> bool:
        return self.proto is not None and bool(self.proto.extensions)

    # -- out ------------------------------------------------------------------------
    async def send(self, payload: str | bytes, fin: bool = True) -> None:
        assert self.proto is not None
        await self.send_raw(bytes(self.proto.send_data(payload, fin)))

    async def ping(self, payload: bytes) -> None:
        assert self.proto is not None
        await self.send_raw(bytes(self.proto.ping(payload)))

    async def close(self, code: int, reason: str = "") -> None:
        assert self.proto is not None
        await self.send_raw(bytes(self.proto.close(code, reason)))

    async def send_raw(self, data: bytes) -> None:
        """Bytes as DATA on the stream, as the windows allow (RFC 9113 §5.2)."""
        while data:
            h2 = self.h2
            window = min(h2.local_flow_control_window(self.stream), h2.max_outbound_frame_size)
            if window <= 0:
                await self._pump()
                continue
            self.h2.send_data(self.stream, data[:window])
            data = data[window:]
            self._flush()
        await self.writer.drain()

    def end_stream(self) -> None:
        self.h2.end_stream(self.stream)
        self._flush()

    # -- in -------------------------------------------------------------------------
    async def recv(self, timeout: float = 10.0) -> Message:
        """The next whole message (its frames joined) or control frame."""
        return await asyncio.wait_for(self._recv(), timeout)

    async def _recv(self) -> Message:
        parts: list[Frame] = []
        while True:
            while not self.frames:
                if self.ended or self.reset is not None or self.closed:
                    raise EOFError(f"stream over (reset={self.reset}, ended={self.ended})")
                await self._pump()
            frame = self.frames.pop(0)
            if frame.opcode in (Opcode.PING, Opcode.PONG, Opcode.CLOSE):
                return Message(frame.opcode.name.lower(), frame.payload)
            parts.append(frame)
            if frame.message_finished:
                first = parts[0].opcode
                if first is Opcode.TEXT:
                    text = "".join(str(p.payload) for p in parts)
                    return Message("text", text, len(parts))
                data = b"".join(bytes(p.payload) for p in parts)  # type: ignore[arg-type]
                return Message("binary", data, len(parts))

    async def wait_end(self, timeout: float = 10.0) -> None:
        """Until the server ended or reset the stream (or the connection)."""

        async def ended() -> None:
            while not (self.ended or self.reset is not None or self.closed):
                await self._pump()

        await asyncio.wait_for(ended(), timeout)

    async def _pump(self) -> None:
        data = await asyncio.wait_for(self.reader.read(65536), 15)
        if not data:
            self.closed = True
            return
        for event in self.h2.receive_data(data):
            self._event(event)
        self._flush()

    def _event(self, event: object) -> None:
        stream = getattr(event, "stream_id", None)
        if isinstance(event, ev.RemoteSettingsChanged):
            self.settings = True
        elif stream is not None and stream != self.stream and stream != 0:
            if isinstance(event, ev.ResponseReceived):  # the GET sent first
                self.primed = int(dict(event.headers)[b":status"])
            elif isinstance(event, ev.DataReceived):
                self.h2.acknowledge_received_data(event.flow_controlled_length, stream)
        elif isinstance(event, ev.ResponseReceived):
            self.headers = list(event.headers)
            self.status = int(dict(self.headers)[b":status"])
            if self.status == 200:
                self._switched()
        elif isinstance(event, ev.DataReceived):
            self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            if self.proto is None:
                self.body += event.data
            else:
                self.proto.receive_bytes(event.data)
                self.frames += list(self.proto.received_frames())
        elif isinstance(event, ev.StreamEnded):
            self.ended = True
        elif isinstance(event, ev.StreamReset):
            self.reset = event.error_code
        elif isinstance(event, ev.ConnectionTerminated):
            self.closed = True

    def _flush(self) -> None:
        data = self.h2.data_to_send()
        if data:
            self.writer.write(data)

    async def aclose(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError, TimeoutError, ssl.SSLError):
            await asyncio.wait_for(self.writer.wait_closed(), 5)
