"""The HTTP/2 connection to the client, shared by its streams: frames out, flow control.

``ClientLink`` wraps ``h2``'s connection object (framing, HPACK, stream
states) and adds what h2 leaves to its user:

* Outgoing DATA is queued per stream and sent only as far as the client's
  flow-control windows allow (RFC 9113 §5.2); the rest waits for its
  WINDOW_UPDATE. ``pending(stream)`` tells the layer how much waits, so it
  can stop reading that stream's server while the client is slow: a slow
  reader slows its writer, and memory stays bounded per stream.
* The end of a stream (with trailers) is queued behind its data.
* Incoming DATA is acknowledged only when the exchange has taken it
  (``consumed``), so the client can never have more in flight toward us
  than our windows: per stream, and for the connection as a whole.

Everything h2 wants sent is taken with ``take()`` as one ``SendData`` to
the client, with the time a rule's pacing set when there is one.
"""

from __future__ import annotations

import contextlib
import logging

import h2.connection
from h2.config import H2Configuration
from h2.connection import ConnectionState, H2Connection
from h2.errors import ErrorCodes
from h2.exceptions import StreamClosedError
from h2.settings import SettingCodes, Settings
from h2.stream import STREAM_OPEN, StreamState

from proxy.layers.commands import CLIENT, SendData
from proxy.layers.http2 import validation

Header = tuple[bytes, bytes]

STREAM_WINDOW = 1 << 20  # what one stream may have in flight toward us
CONNECTION_WINDOW = 4 << 20  # and all streams together
MAX_CONCURRENT_STREAMS = 100
MAX_HEADER_LIST_SIZE = 64 * 1024
_OPEN = StreamState.OPEN  # the states a stream can still take our frames in
_HALF_CLOSED_REMOTE = StreamState.HALF_CLOSED_REMOTE
# hpack logs at DEBUG for every header field it encodes or decodes (about 50
# calls per proxied HTTP/2 request, ~0.26 us each even when nothing listens).
_HPACK_LOGGERS = ("hpack.hpack", "hpack.table")


_H2_CONNECTION_MODULE = vars(h2.connection)


# Takes any arguments and drops them, in C: the format of an empty string reads
# none of its arguments. A Python no-op costs a Python call each time (hpack
# logs ~48 times per proxied HTTP/2 request, h2 ~17).
_no_debug = "".format


class QuietLogger:
    """h2's logger (``H2Configuration.logger``): its DEBUG and TRACE messages
    are dropped at the call, as h2's own ``DummyLogger`` does, without a
    Python call each."""

    __slots__ = ()
    debug = _no_debug
    trace = _no_debug


class Config(H2Configuration):
    """h2's configuration with its options as plain attributes.

    h2 reads ``client_side``, ``validate_inbound_headers``... for every frame
    and header block, each read a call of its checking descriptor (~16 Python
    calls per proxied request). The values are ours and fixed at
    construction (booleans, set by h2's own ``__init__``), so plain
    attributes hold the same values.
    """

    client_side = True
    validate_outbound_headers = True
    normalize_outbound_headers = True
    split_outbound_cookies = False
    validate_inbound_headers = True
    normalize_inbound_headers = True


def quiet_hpack() -> None:
    """Drop hpack's DEBUG calls at the call itself, not in ``Logger.isEnabledFor``.

    tapproxy never configures DEBUG logging, so these messages can never be
    shown; the calls cost ~13 us of CPU per HTTP/2 request (both legs h2),
    ~4 us with this no-op. Idempotent.
    """
    for name in _HPACK_LOGGERS:
        logger = logging.getLogger(name)
        if logger.__dict__.get("debug") is not _no_debug:
            logger.debug = _no_debug  # type: ignore[method-assign,assignment]


def quiet_h2_trace() -> None:
    """Stop h2 building a frame's full repr for a trace message nobody reads.

    ``H2Connection._receive_frame`` runs ``self.config.logger.trace("Received
    frame: %s", repr(frame))`` for every frame received; the repr (flags and
    body, hyperframe's ``Frame.__repr__``) is built before h2's no-op logger
    drops it: 3.3% of the proxy's CPU in a py-spy profile of scenario h's
    h2c load. That line is the only use of ``repr`` in ``h2.connection``
    (a test holds it to that), so a module-level ``repr`` there, the built-in
    ``type``, changes nothing but that unread argument (a frame's class).
    """
    _H2_CONNECTION_MODULE.setdefault("repr", type)


class Connection(H2Connection):
    """h2's connection, counting open streams without h2's per-stream properties.

    h2 counts the open streams of a side every time one is opened, in
    ``_open_streams``: a walk over every stream it holds, reading two
    properties of each (python-hyper/h2#1184), ~1.7% of the proxy's CPU per
    request at 10 streams per connection and ten times that walk at 100.
    This is the same walk, the same count and the same removal of closed
    streams (to ``_closed_streams``, as h2 does), with the state read once.
    """

    def _open_streams(self, remainder: int) -> int:
        count = 0
        closed = []
        for stream_id, stream in self.streams.items():
            state = stream.state_machine.state
            if STREAM_OPEN[state]:
                if stream_id % 2 == remainder:
                    count += 1
            elif state == StreamState.CLOSED:
                closed.append(stream_id)
        for stream_id in closed:
            stream = self.streams.pop(stream_id)
            self._closed_streams[stream_id] = stream.closed_by
        return count


def connection(client_side: bool) -> H2Connection:
    """h2 as both our ends use it: validation of what comes in stays on; what
    goes out is built by us (``heads``, ``channel``) and not rewritten. Our
    SETTINGS are the initial values, not changes: h2 sends what is in force,
    and streams get their windows from it at once. A client-facing end also
    bounds the streams a client may open."""
    config = Config(
        client_side=client_side,
        header_encoding=None,
        validate_inbound_headers=True,
        normalize_inbound_headers=False,
        validate_outbound_headers=False,
        normalize_outbound_headers=False,
        logger=QuietLogger(),  # type: ignore[arg-type]
    )
    values = {
        SettingCodes.ENABLE_PUSH: 0,
        SettingCodes.INITIAL_WINDOW_SIZE: STREAM_WINDOW,
        SettingCodes.MAX_HEADER_LIST_SIZE: MAX_HEADER_LIST_SIZE,
    }
    if not client_side:
        values[SettingCodes.MAX_CONCURRENT_STREAMS] = MAX_CONCURRENT_STREAMS
        values[SettingCodes.ENABLE_CONNECT_PROTOCOL] = 1  # RFC 8441 §3: WebSockets (wsstream)
    quiet_hpack()
    quiet_h2_trace()
    validation.install()  # h2's own checks, with a fast path for well-formed blocks
    conn = Connection(config)
    conn.local_settings = Settings(client=client_side, initial_values=values)
    return conn


def initiate(conn: H2Connection, upgrade_settings: bytes | None = None) -> None:
    """The preface and our SETTINGS (after an ``Upgrade: h2c``, the client's came
    in its header), and the connection's window raised to ``CONNECTION_WINDOW``."""
    if upgrade_settings is None:
        conn.initiate_connection()
    else:
        conn.initiate_upgrade_connection(upgrade_settings)
    conn.increment_flow_control_window(CONNECTION_WINDOW - 65535)


def release(conn: H2Connection) -> None:
    """Free an ended connection at once: h2 keeps a table of its own bound
    methods (``_frame_dispatch_table``), a reference cycle that would hold it,
    its streams and their buffers until the next full collection (seen as
    +20 MB of RSS over 60,000 HTTP/2 requests in scenario h)."""
    table = getattr(conn, "_frame_dispatch_table", None)
    if isinstance(table, dict):
        table.clear()


def send_window(conn: H2Connection, stream: int, queue: bytearray, end: bool = False) -> bool:
    """Send as much of ``queue`` on ``stream`` as the peer's windows and frame
    size allow (RFC 9113 §5.2, §4.2); True when it is all gone. ``end``: the
    last DATA frame, when it empties the queue, carries END_STREAM (one frame
    less than an empty DATA behind it, RFC 9113 §6.1)."""
    size = conn.max_outbound_frame_size
    window = conn.local_flow_control_window(stream)
    while queue and window > 0:
        n = len(queue)
        if n <= size and n <= window:  # the rest fits in one frame: the usual case
            conn.send_data(stream, bytes(queue), end_stream=end)
            queue.clear()
            return True
        n = min(n, size, window)
        conn.send_data(stream, bytes(queue[:n]))
        del queue[:n]
        window -= n
    return not queue


def end_stream(conn: H2Connection, stream: int, trailers: list[Header] | None) -> None:
    """END_STREAM: on a last header block when there are trailers, else an empty DATA."""
    if trailers:
        conn.send_headers(stream, trailers, end_stream=True)
    else:
        conn.end_stream(stream)


class ClientLink:
    """h2's client-facing connection with per-stream DATA queues (see the module).

    DATA is queued and goes into h2's buffer when it is taken (``take``),
    asked about (``pending``) or when its stream ends (``end``): a response
    whose body and end arrive together then leaves as one DATA frame that
    carries END_STREAM, and the frames of every stream answered in one turn
    go out in one ``SendData``.
    """

    __slots__ = ("conn", "dirty", "ends", "queued")

    def __init__(self) -> None:
        self.conn = connection(client_side=False)
        self.queued: dict[int, bytearray] = {}  # DATA waiting for window, per stream
        self.ends: dict[int, list[Header] | None] = {}  # stream ends waiting behind it
        self.dirty: dict[int, None] = {}  # streams with DATA not yet tried, in order

    def start(self, upgrade_settings: bytes | None = None) -> None:
        initiate(self.conn, upgrade_settings)

    def take(self, at: float | None = None) -> SendData | None:
        if self.dirty:
            for stream in list(self.dirty):
                self.flush(stream)
        data = self.conn.data_to_send()
        return SendData(CLIENT, data, at) if data else None

    # -- out ----------------------------------------------------------------------
    def headers(self, stream: int, block: list[Header], end: bool = False) -> None:
        if self._open(stream):
            if stream in self.dirty:  # frames of a stream keep their order
                self.flush(stream)
            self.conn.send_headers(stream, block, end_stream=end)

    def data(self, stream: int, data: bytes) -> None:
        if not data or not self._open(stream):
            return
        queue = self.queued.get(stream)
        if queue is None:
            self.queued[stream] = bytearray(data)
        else:
            queue += data
        self.dirty[stream] = None

    def end(self, stream: int, trailers: list[Header] | None = None) -> None:
        """End the stream after what is queued (with trailers, if any)."""
        if not self._open(stream):
            return
        self.ends[stream] = trailers
        self.flush(stream)

    def reset(self, stream: int, code: ErrorCodes) -> None:
        self.queued.pop(stream, None)
        self.ends.pop(stream, None)
        self.dirty.pop(stream, None)
        s = self.conn.streams.get(stream)
        if s is not None and not s.closed:
            with contextlib.suppress(StreamClosedError):
                self.conn.reset_stream(stream, code)

    def pending(self, stream: int) -> int:
        """DATA of ``stream`` the client's windows keep here (what they allow goes first)."""
        if stream in self.dirty:
            self.flush(stream)
        queue = self.queued.get(stream)
        return len(queue) if queue is not None else 0

    def flush(self, stream: int) -> None:
        """Send what the windows allow of ``stream``'s queue, then its end."""
        self.dirty.pop(stream, None)
        queue = self.queued.get(stream)
        ends = self.ends
        if queue:
            last = stream in ends and ends[stream] is None  # no trailers: END_STREAM on DATA
            if not send_window(self.conn, stream, queue, last):
                return
            del self.queued[stream]
            if last:
                del ends[stream]
                return
        if stream in ends:
            end_stream(self.conn, stream, ends.pop(stream))

    def flush_all(self) -> list[int]:
        """After a window opened: flush every stream; the ones that drained."""
        drained = []
        for stream in [*self.queued, *self.ends]:
            if stream in self.queued or stream in self.ends:
                self.flush(stream)
                if stream not in self.queued:
                    drained.append(stream)
        return drained

    def _open(self, stream: int) -> bool:
        """The stream can still take frames from us (not ended by us, closed or reset)."""
        conn = self.conn
        if conn.state_machine.state is ConnectionState.CLOSED:
            return False  # after a GOAWAY from the client h2 sends nothing more
        s = conn.streams.get(stream)
        if s is None:
            return False
        state = s.state_machine.state  # compared by identity: an enum's hash is Python code
        return state is _OPEN or state is _HALF_CLOSED_REMOTE

    # -- in -------------------------------------------------------------------------
    def consumed(self, stream: int, size: int) -> None:
        """``size`` flow-controlled bytes of ``stream`` were taken: the client may send more."""
        if size:  # h2 restores the connection's window even when the stream is gone
            self.conn.acknowledge_received_data(size, stream)

    @property
    def remote_max_streams(self) -> int:
        return int(self.conn.remote_settings[SettingCodes.MAX_CONCURRENT_STREAMS])
