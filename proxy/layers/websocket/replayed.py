"""The server of a WebSocket session played back from a recording (server replay).

Sans-IO, in the place of a server connection: the WebSocket layer hands it
the client's frames it would have sent upstream, and takes back what the
recorded server would have answered, as server frames (unmasked, RFC 6455
§5.1), which the layer then reads, records and relays as any server's.

Pacing is by order, not by time: the recorded server messages that came
before the client's first message are sent at once; after that, each time
a client message completes, the server messages that followed the
corresponding client message in the recording are sent (the client's n-th
message releases what the server sent after its n-th). The recording's time
offsets are not waited for (a test answered from a recording should not
wait on the network's timing); a client that sends more messages than were
recorded gets no more answers. Pings are answered with pongs, and a Close
with the same Close, after which the replayed server ends its side
(§5.5.1). Messages go uncompressed: the replayed ``101`` accepts no
extension.
"""

from __future__ import annotations

from collections.abc import Sequence

from proxy.flow.hooks import ScriptedMessage
from proxy.layers.websocket.frames import FrameReader, Opcode, WsError, encode


class ReplayedServer:
    __slots__ = ("_pos", "_reader", "_script", "closed")

    def __init__(self, script: Sequence[ScriptedMessage], max_frame: int) -> None:
        self._script = tuple(script)
        self._pos = 0  # the next recorded message not yet played or passed
        self._reader = FrameReader(True, False, max_frame)
        self.closed = False  # the replayed server sent its Close and ended

    def opening(self) -> bytes:
        """What the server sent before the client's first message."""
        return self._server_turn()

    def feed(self, data: bytes) -> bytes:
        """The client's frames (wire bytes, any pieces); the server's answer."""
        if self.closed:
            return b""
        out: list[bytes] = []
        try:
            for chunk in self._reader.feed(data):
                if chunk.opcode is Opcode.CLOSE:
                    out.append(encode(Opcode.CLOSE, chunk.payload[:2], False))
                    self.closed = True
                    break
                if chunk.opcode is Opcode.PING:
                    out.append(encode(Opcode.PONG, chunk.payload, False))
                elif chunk.opcode is not Opcode.PONG and chunk.fin and chunk.frame_done:
                    out.append(self._client_turn())
        except WsError as e:  # the layer checked these frames first: not expected
            out.append(encode(Opcode.CLOSE, e.code.to_bytes(2, "big"), False))
            self.closed = True
        return b"".join(out)

    def _client_turn(self) -> bytes:
        """A client message completed: pass its recorded one, play what followed."""
        script = self._script
        while self._pos < len(script) and not script[self._pos].from_client:
            self._pos += 1  # server messages left over (not expected: played at once)
        if self._pos < len(script):
            self._pos += 1
        return self._server_turn()

    def _server_turn(self) -> bytes:
        script = self._script
        out: list[bytes] = []
        while self._pos < len(script) and not script[self._pos].from_client:
            m = script[self._pos]
            out.append(encode(Opcode.TEXT if m.text else Opcode.BINARY, m.data, False))
            self._pos += 1
        return b"".join(out)
