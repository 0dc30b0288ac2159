"""IP fragment reassembly with a bounded table and timeouts.

Fragments of one datagram are keyed by (version, source, destination,
protocol, identification) as RFC 791 §3.2 (IPv4) and RFC 8200 §4.5 (IPv6)
prescribe. Each entry keeps its pieces by offset; when the last fragment
(More Fragments clear) has fixed the total length and the pieces cover it
without a hole, the datagram's payload is returned and the entry dropped.

Bounds, so that a hostile or broken capture cannot grow memory: at most
``max_entries`` datagrams in flight (the oldest is evicted), at most
``max_size`` bytes per datagram (65535, the IPv4 limit), and an entry whose
first fragment is older than ``timeout`` seconds of *capture* time is
dropped (RFC 791 suggests 15 s; Linux uses 30 s). Where pieces overlap
(which RFC 5722 forbids for IPv6 and no honest sender does), the piece with
the lower offset wins, and of two at the same offset the one seen first.
"""

from __future__ import annotations

from dataclasses import dataclass, field

FragmentKey = tuple[int, bytes, bytes, int, int]


@dataclass(slots=True)
class _Datagram:
    first_ts: float
    parts: dict[int, bytes] = field(default_factory=dict)
    total: int | None = None


@dataclass(slots=True)
class FragmentStats:
    fragments: int = 0
    reassembled: int = 0
    expired: int = 0  # datagrams dropped by timeout or eviction
    oversized: int = 0


class FragmentTable:
    """Collects fragments; ``add`` returns the whole payload once complete."""

    def __init__(
        self, max_entries: int = 1024, timeout: float = 30.0, max_size: int = 65535
    ) -> None:
        self.max_entries = max_entries
        self.timeout = timeout
        self.max_size = max_size
        self.stats = FragmentStats()
        self._table: dict[FragmentKey, _Datagram] = {}

    def __len__(self) -> int:
        return len(self._table)

    def add(
        self, key: FragmentKey, ts: float, offset: int, more: bool, data: bytes
    ) -> bytes | None:
        self.stats.fragments += 1
        self._expire(ts)
        entry = self._table.get(key)
        if entry is None:
            if len(self._table) >= self.max_entries:
                del self._table[next(iter(self._table))]
                self.stats.expired += 1
            entry = self._table[key] = _Datagram(ts)
        end = offset + len(data)
        if end > self.max_size:
            del self._table[key]
            self.stats.oversized += 1
            return None
        entry.parts.setdefault(offset, data)
        if not more:
            entry.total = end
        if entry.total is None:
            return None
        whole = _join(entry.parts, entry.total)
        if whole is not None:
            del self._table[key]
            self.stats.reassembled += 1
        return whole

    def _expire(self, now: float) -> None:
        """Drop entries whose first fragment is too old (table is in arrival order)."""
        table = self._table
        while table:
            key = next(iter(table))
            if now - table[key].first_ts <= self.timeout:
                return
            del table[key]
            self.stats.expired += 1


def _join(parts: dict[int, bytes], total: int) -> bytes | None:
    """The pieces concatenated if they cover [0, total) without a hole."""
    out: list[bytes] = []
    covered = 0
    for offset in sorted(parts):
        if offset > covered:
            return None  # a hole
        data = parts[offset]
        if offset + len(data) > covered:
            out.append(data[covered - offset :])
            covered = offset + len(data)
        if covered >= total:
            return b"".join(out)[:total]
    return None
