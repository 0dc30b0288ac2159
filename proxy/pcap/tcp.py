"""TCP stream reassembly: captured segments in, ordered byte streams out.

Each connection is identified by its 4-tuple; both directions are tracked by
one ``_Connection`` held in the table under both directed keys, so a lookup is
one dict access. Sequence numbers (RFC 9293 §3.4) are mapped to 64-bit stream
offsets relative to the first byte of each direction, so wraparound and
comparisons are plain integer arithmetic.

Policies (also in docs/analyze.md):

* Start: a SYN fixes the initial sequence number (ISN + 1 is offset 0) and
  makes its sender the client. Without a SYN, the first segment carrying data
  or FIN starts the direction, and the client is guessed from the ports (the
  side with the higher port); ``ConnectionInfo.syn_seen`` says which it was.
  Data from before that first captured segment is unknowable and ignored.
* Order: a segment ahead of the next expected byte is held (out of order)
  until the hole before it fills. A segment wholly before it is a
  retransmission and dropped.
* Overlaps: the bytes seen first win. Bytes already delivered are never
  changed, and a held segment is stored only for the parts no earlier held
  segment covers. (Operating systems differ on overlaps, see RFC 9293 §3.10.7.4
  and Ptacek & Newsham 1998; "first wins" is what a passive observer can
  state without guessing a target's policy.)
* Gaps: bytes are never invented. When a hole cannot be filled any more (the
  direction is held over its byte or segment bound, a hole is older than
  ``gap_timeout`` of capture time, the connection ends, or the overall
  buffer cap is reached) the consumer is told ``on_gap(size)`` and delivery
  continues after the hole.
* End: when both FINs have been delivered in order, or on RST, the
  connection is closed and forgotten; stray packets of a closed 4-tuple
  (final ACKs, retransmitted FINs) are ignored unless they are a new SYN.
  Idle connections are closed after ``idle_timeout``; when the table is full
  the oldest connection is evicted; ``finish()`` closes everything left at the
  end of the capture.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from proxy.pcap.decode import DecodedPacket

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
_MASK = 0xFFFFFFFF
_CONTROL = SYN | FIN | RST
_SWEEP_EVERY = 4096  # packets between looks at the clock for an idle-connection sweep

Endpoint = tuple[bytes, int]  # packed address, port
Key = tuple[bytes, int, bytes, int]  # source address, port, destination address, port


class StreamConsumer(Protocol):
    """Receives one connection's reassembled data, in order, per direction."""

    def on_data(self, from_client: bool, ts: float, data: bytes) -> None: ...
    def on_gap(self, from_client: bool, ts: float, size: int) -> None: ...
    def on_fin(self, from_client: bool, ts: float) -> None: ...
    def on_close(self, ts: float, reason: str) -> None: ...


@dataclass(frozen=True, slots=True)
class ConnectionInfo:
    id: int  # 1, 2, ... in order of first packet
    version: int  # 4 or 6
    client: Endpoint
    server: Endpoint
    syn_seen: bool
    start: float


ConsumerFactory = Callable[[ConnectionInfo], StreamConsumer]


@dataclass(frozen=True, slots=True)
class ReassemblyLimits:
    max_stream_buffer: int = 4 << 20  # out-of-order bytes held per direction
    max_stream_segments: int = 4096  # out-of-order segments held per direction
    max_total_buffer: int = 256 << 20  # out-of-order bytes held overall
    max_connections: int = 200_000
    gap_timeout: float = 30.0  # capture seconds a hole may stay open
    idle_timeout: float = 900.0  # capture seconds without a packet
    closed_memory: float = 120.0  # capture seconds a closed 4-tuple is remembered


@dataclass(slots=True)
class ReassemblyStats:
    connections: int = 0
    segments: int = 0
    retransmitted: int = 0  # segments wholly before the next expected byte
    overlap_bytes: int = 0  # bytes dropped because earlier ones covered them
    out_of_order: int = 0  # segments held for a hole
    gaps: int = 0
    gap_bytes: int = 0
    ignored: int = 0  # packets of unknown or closed connections without data
    late: int = 0  # data after a connection closed
    evicted: int = 0
    timed_out: int = 0


class _Half:
    """One direction: where the stream is and what is held out of order."""

    __slots__ = ("base", "done", "fin", "held", "held_bytes", "held_since", "pos")

    def __init__(self) -> None:
        self.base: int | None = None  # sequence number of stream offset 0
        self.pos = 0  # stream offset of the next byte to deliver
        self.held: list[tuple[int, bytes, float]] = []  # sorted, non-overlapping
        self.held_bytes = 0
        self.held_since = 0.0
        self.fin: int | None = None  # stream offset of the FIN
        self.done = False  # FIN delivered

    def offset(self, seq: int) -> int:
        """Stream offset of ``seq``, taking the nearer of the two wraparound readings."""
        assert self.base is not None
        d = (seq - self.base - self.pos) & _MASK
        return self.pos + (d - (1 << 32) if d >= 1 << 31 else d)


class _Connection:
    __slots__ = ("closed", "consumer", "halves", "info", "keys", "last_ts")

    def __init__(self, info: ConnectionInfo, consumer: StreamConsumer, keys: tuple[Key, Key]):
        self.info = info
        self.consumer = consumer
        self.halves = (_Half(), _Half())  # index 0: server->client, 1: client->server
        self.keys = keys
        self.last_ts = info.start
        self.closed = False


class Reassembler:
    """Feed ``add(packet)`` with TCP packets in capture order; call ``finish()`` at the end."""

    def __init__(self, factory: ConsumerFactory, limits: ReassemblyLimits | None = None) -> None:
        self.factory = factory
        self.limits = limits or ReassemblyLimits()
        self.stats = ReassemblyStats()
        self._table: dict[Key, tuple[_Connection, bool]] = {}
        self._conns: dict[int, _Connection] = {}  # by id, oldest first
        self._closed: dict[Key, float] = {}
        self._held_total = 0
        self._count = 0
        self._swept = 0.0  # capture time of the last sweep
        limits = self.limits
        self._sweep_interval = min(limits.idle_timeout, limits.closed_memory) / 4

    @property
    def active(self) -> int:
        return len(self._conns)

    def add(self, p: DecodedPacket) -> None:
        self.stats.segments += 1
        self._count += 1
        if self._count % _SWEEP_EVERY == 0 and p.ts - self._swept >= self._sweep_interval:
            self._sweep(p.ts)
        key = (p.src, p.sport, p.dst, p.dport)
        entry = self._table.get(key)
        if entry is None:
            self._unknown(key, p)
            return
        conn, from_client = entry
        conn.last_ts = p.ts
        if p.flags & _CONTROL:
            self._control(conn, from_client, p)
        elif p.payload:
            half = conn.halves[from_client]
            if (
                half.base is not None
                and not half.held
                and half.fin is None
                and p.seq == (half.base + half.pos) & _MASK
            ):
                half.pos += len(p.payload)  # in order: the fast path of _data
                conn.consumer.on_data(from_client, p.ts, p.payload)
            else:
                self._data(conn, from_client, p.seq, p.payload, p.ts)

    def expire(self, now: float) -> None:
        """Close connections idle at ``now`` (live capture sweeps on the wall clock too)."""
        self._sweep(now)

    def finish(self) -> None:
        """Close every connection still open (the capture ended)."""
        for conn in list(self._conns.values()):
            self._close(conn, conn.last_ts, "eof")

    # -- connection lifecycle -------------------------------------------------
    def _unknown(self, key: Key, p: DecodedPacket) -> None:
        flags = p.flags
        is_syn = bool(flags & SYN) and not flags & RST
        if key in self._closed and not (is_syn and not flags & ACK):
            if p.payload:
                self.stats.late += 1
            else:
                self.stats.ignored += 1
            return
        if not (is_syn or p.payload) or flags & RST:
            self.stats.ignored += 1
            return
        sender_is_client = not flags & ACK if is_syn else p.sport >= p.dport
        conn = self._open(p, sender_is_client, is_syn)
        self._control(conn, sender_is_client, p)

    def _open(self, p: DecodedPacket, sender_is_client: bool, syn: bool) -> _Connection:
        if len(self._conns) >= self.limits.max_connections:
            self.stats.evicted += 1
            oldest = next(iter(self._conns.values()))
            self._close(oldest, oldest.last_ts, "evicted")
        self.stats.connections += 1
        a, b = (p.src, p.sport), (p.dst, p.dport)
        client, server = (a, b) if sender_is_client else (b, a)
        info = ConnectionInfo(self.stats.connections, p.version, client, server, syn, p.ts)
        fwd, rev = (p.src, p.sport, p.dst, p.dport), (p.dst, p.dport, p.src, p.sport)
        conn = _Connection(info, self.factory(info), (fwd, rev))
        self._table[fwd] = (conn, sender_is_client)
        self._table[rev] = (conn, not sender_is_client)
        self._closed.pop(fwd, None)
        self._closed.pop(rev, None)
        self._conns[info.id] = conn
        return conn

    def _close(self, conn: _Connection, ts: float, reason: str) -> None:
        if conn.closed:
            return
        conn.closed = True
        if reason in ("eof", "timeout") and all(h.fin is not None for h in conn.halves):
            reason = "fin"  # both sides had closed; only a hole kept the connection open
        for from_client in (True, False):
            half = conn.halves[from_client]
            while half.held:
                self._skip_hole(conn, from_client, half)
            if half.fin is not None and not half.done:
                if half.pos < half.fin:
                    self._gap(conn, from_client, half, ts, half.fin - half.pos)
                half.done = True
                conn.consumer.on_fin(from_client, ts)
        closed = self._closed
        # A segment from an address:port to itself has one key for both
        # directions (seen in fuzzed captures): forget each key once.
        for key in dict.fromkeys(conn.keys):
            self._table.pop(key, None)
            closed[key] = ts
        while len(closed) > 2 * self.limits.max_connections:
            del closed[next(iter(closed))]
        del self._conns[conn.info.id]
        conn.consumer.on_close(ts, reason)

    def _sweep(self, now: float) -> None:
        """Close idle connections and forget old closed 4-tuples (every few minutes)."""
        self._swept = now
        limits = self.limits
        for conn in list(self._conns.values()):
            if now - conn.last_ts > limits.idle_timeout:
                self.stats.timed_out += 1
                self._close(conn, conn.last_ts, "timeout")
        closed = self._closed
        while closed:
            key = next(iter(closed))
            if now - closed[key] <= limits.closed_memory and len(closed) <= limits.max_connections:
                break
            del closed[key]

    # -- segments ---------------------------------------------------------------
    def _control(self, conn: _Connection, from_client: bool, p: DecodedPacket) -> None:
        """SYN, FIN and RST handling (RFC 9293 §3.5, §3.6); data goes to ``_data``."""
        half = conn.halves[from_client]
        flags = p.flags
        seq = p.seq
        if flags & SYN:
            if half.base is None:
                half.base = (seq + 1) & _MASK
            seq = (seq + 1) & _MASK  # data on a SYN (TCP Fast Open) follows the ISN
        elif half.base is None:
            half.base = seq
        if p.payload:
            self._data(conn, from_client, seq, p.payload, p.ts)
            if conn.closed:
                return
        if flags & RST:
            self._close(conn, p.ts, "rst")
            return
        if flags & FIN and half.fin is None:
            half.fin = half.offset(seq) + len(p.payload)
            self._check_fin(conn, from_client, half, p.ts)

    def _data(self, conn: _Connection, from_client: bool, seq: int, data: bytes, ts: float) -> None:
        half = conn.halves[from_client]
        if half.base is None:
            half.base = seq
        start = half.offset(seq)
        end = start + len(data)
        if end <= half.pos:
            self.stats.retransmitted += 1
            return
        if start < half.pos:
            self.stats.overlap_bytes += half.pos - start
            data = data[half.pos - start :]
            start = half.pos
        if start == half.pos:
            half.pos = end
            conn.consumer.on_data(from_client, ts, data)
            self._drain(conn, from_client, half)
        else:
            self._hold(conn, from_client, half, start, data, ts)
        if half.fin is not None:
            self._check_fin(conn, from_client, half, ts)

    def _hold(
        self, conn: _Connection, from_client: bool, half: _Half, start: int, data: bytes, ts: float
    ) -> None:
        """Keep an out-of-order segment, minus what held segments already cover."""
        self.stats.out_of_order += 1
        if not half.held:
            half.held_since = ts
        end = start + len(data)
        pieces: list[tuple[int, bytes, float]] = []
        cur = start
        for s, d, _ in half.held:
            e = s + len(d)
            if e <= cur:
                continue
            if s >= end:
                break
            if s > cur:
                pieces.append((cur, data[cur - start : s - start], ts))
            cur = max(cur, e)
            if cur >= end:
                break
        if cur < end:
            pieces.append((cur, data[cur - start :], ts))
        kept = sum(len(d) for _, d, _ in pieces)
        self.stats.overlap_bytes += len(data) - kept
        half.held.extend(pieces)
        half.held.sort(key=lambda h: h[0])
        half.held_bytes += kept
        self._held_total += kept
        self._enforce_bounds(conn, from_client, half, ts)

    def _enforce_bounds(self, conn: _Connection, from_client: bool, half: _Half, ts: float) -> None:
        limits = self.limits
        while half.held and (
            half.held_bytes > limits.max_stream_buffer
            or len(half.held) > limits.max_stream_segments
            or ts - half.held_since > limits.gap_timeout
        ):
            self._skip_hole(conn, from_client, half)
        if self._held_total > limits.max_total_buffer:
            self._relieve_total()

    def _relieve_total(self) -> None:
        """Over the overall cap: give up the holes of the stream holding most."""
        while self._held_total > self.limits.max_total_buffer:
            conn, from_client = max(
                ((c, fc) for c in self._conns.values() for fc in (True, False)),
                key=lambda cf: cf[0].halves[cf[1]].held_bytes,
            )
            half = conn.halves[from_client]
            if not half.held:
                return  # pragma: no cover - the accounting says otherwise
            while half.held:
                self._skip_hole(conn, from_client, half)

    def _skip_hole(self, conn: _Connection, from_client: bool, half: _Half) -> None:
        """Declare the hole before the first held segment a gap, then deliver on."""
        start, _, ts = half.held[0]
        self._gap(conn, from_client, half, ts, start - half.pos)
        half.pos = start
        self._drain(conn, from_client, half)

    def _gap(self, conn: _Connection, from_client: bool, half: _Half, ts: float, size: int) -> None:
        self.stats.gaps += 1
        self.stats.gap_bytes += size
        conn.consumer.on_gap(from_client, ts, size)

    def _drain(self, conn: _Connection, from_client: bool, half: _Half) -> None:
        """Deliver held segments that the stream has now reached."""
        held = half.held
        while held and held[0][0] <= half.pos:
            start, data, ts = held.pop(0)
            half.held_bytes -= len(data)
            self._held_total -= len(data)
            end = start + len(data)
            if end > half.pos:
                data = data[half.pos - start :]
                half.pos = end
                conn.consumer.on_data(from_client, ts, data)
        if held:
            half.held_since = held[0][2]

    def _check_fin(self, conn: _Connection, from_client: bool, half: _Half, ts: float) -> None:
        if half.done or half.fin is None or half.pos < half.fin or half.held:
            return
        half.done = True
        conn.consumer.on_fin(from_client, ts)
        if conn.halves[not from_client].done:
            self._close(conn, ts, "fin")
