"""What the soak clients saw, and how fast they may ask.

``Tally`` classifies every exchange as ``ok``, ``fault`` (the expected
outcome of an injected fault) or ``unexpected`` (the first 20 distinct texts
kept, normalized), per client; the markers name the unexpected errors that
come from known proxy bugs (``KNOWN_BUGS``, docs/reliability.md).
``Limiter`` is the token bucket every client shares (``--rate``).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

TRICKLE_BUG = "slowloris (trickle)"
CLOSE_BUG = "still open after the response to a `Connection: close` request"
TLS_CLOSE_BUG = "no close_notify from the proxy"
CLOSE_WAIT = 2.0  # how long a client waits for the proxy to close after `Connection: close`
TLS_CLOSE_WAIT = 2.0  # ... for the proxy's close_notify after its own (asyncio waits 30 s)
#: Unexpected errors that come from a proxy bug found by this soak (docs/reliability.md).
KNOWN_BUGS = {
    TRICKLE_BUG: "a slow-header client trickling its head outlives --client-head-timeout",
    CLOSE_BUG: "proxy-made answers (rule block/respond) ignore the client's Connection: close",
    TLS_CLOSE_BUG: "an intercepted client's TLS close_notify is ignored: the connection stays "
    "open until the client gives up and closes TCP",
}


@dataclass
class Tally:
    """What the clients saw. One of ok / fault / unexpected per exchange."""

    by_worker: dict[str, Counter[str]] = field(default_factory=dict)
    http_ok: int = 0  # complete expected responses: one `http` record, error null, each
    http_fault: int = 0  # injected faults: one `http` record with an error each
    tunnels: int = 0  # intercepted CONNECT tunnels the clients opened
    closed_heads: int = 0  # slow-header connections closed by the proxy: no record
    unexpected: int = 0
    unexpected_complete: int = 0  # of which the response was complete (counted in http_ok)
    unexpected_other: int = 0  # of which not about an HTTP exchange (slow heads, TLS close)
    errors: dict[str, list[Any]] = field(default_factory=dict)  # normalized -> [count, example]
    bytes_checked: int = 0  # large bodies verified by size and SHA-256

    def count(self, worker: str, outcome: str) -> None:
        self.by_worker.setdefault(worker, Counter())[outcome] += 1

    def ok(self, worker: str) -> None:
        self.http_ok += 1
        self.count(worker, "ok")

    def fault(self, worker: str) -> None:
        self.http_fault += 1
        self.count(worker, "fault")

    def tunnel(self, worker: str) -> None:
        self.tunnels += 1
        self.count(worker, "tunnel")

    def closed_head(self, worker: str) -> None:
        self.closed_heads += 1
        self.count(worker, "closed (head timeout)")

    def error(
        self, worker: str, exc: BaseException | str, complete: bool = False, exchange: bool = True
    ) -> None:
        """An unexpected outcome; ``complete``: the response itself was complete and right
        (so the exchange has its record, error null), but the connection misbehaved;
        ``exchange`` False: not about a request (a slow head, closing a TLS connection)."""
        self.unexpected += 1
        if complete:
            self.unexpected_complete += 1
            self.http_ok += 1
        elif not exchange:
            self.unexpected_other += 1
        self.count(worker, "unexpected")
        text = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"
        text = f"{worker}: {text}"
        key = re.sub(r"\d{3,}", "N", text)
        if key in self.errors:
            self.errors[key][0] += 1
        elif len(self.errors) < 20:
            self.errors[key] = [1, text]
        else:
            self.errors.setdefault("(other distinct errors)", [0, ""])[0] += 1

    def known_bug(self, marker: str) -> int:
        return sum(c for c, example in self.errors.values() if marker in example)

    @property
    def exchanges(self) -> int:
        """HTTP exchanges attempted (complete or not), CONNECTs apart."""
        failed = self.unexpected - self.unexpected_complete - self.unexpected_other
        return self.http_ok + self.http_fault + failed


class Limiter:
    """A token bucket shared by every client: at most ``rate`` requests a second."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.tokens = 0.0
        self.burst = max(1.0, rate / 10)
        self.last = time.monotonic()
        self.lock = asyncio.Lock()

    async def take(self) -> None:
        async with self.lock:
            while True:
                now = time.monotonic()
                self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
                self.last = now
                if self.tokens >= 1:
                    self.tokens -= 1
                    return
                await asyncio.sleep((1 - self.tokens) / self.rate)
