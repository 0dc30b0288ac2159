"""The soak's load: what every client shares.

``Setup`` says where the proxy and the upstreams are; ``Load`` holds the
clients' shared state (the tally, the rate limiter, the random source, when
to stop) and the background checks of how connections end. The clients
themselves are ``bench.soak_http`` (keep-alive, new connection per request,
large bodies), ``bench.soak_tls`` (HTTPS through intercepted CONNECT
tunnels) and ``bench.soak_misbehave`` (slow readers, slow heads, faulty
upstreams); ``bench.soak.run_load`` runs them together. The proxy's
timeouts the load is set against are here too.
"""

from __future__ import annotations

import asyncio
import random
import ssl
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from bench.soak_tally import Limiter, Tally

CLIENT_HEAD_TIMEOUT = 3.0
RESPONSE_HEAD_TIMEOUT = 3.0
UPSTREAM_IDLE_TIMEOUT = 10.0
WATCHDOG_SLACK = 2.5  # the proxy's watchdog ticks once a second; allow for a loaded machine


@dataclass
class Setup:
    proxy_port: int
    ports: dict[str, int]
    proxy_ca: str  # the proxy's CA certificate (clients trust it for intercepted HTTPS)
    rate: float


class Load:
    """All the clients; every loop ends at ``stop_at`` or after ``max_iter`` rounds."""

    def __init__(self, setup: Setup, seed: int) -> None:
        self.s = setup
        self.tally = Tally()
        self.limiter = Limiter(setup.rate)
        self.rng = random.Random(seed)
        self.stop_at = 0.0
        self.max_iter = 0
        self.proxy_url = f"http://127.0.0.1:{setup.proxy_port}"
        self.http = f"127.0.0.1:{setup.ports['http']}"
        self.tls_ctx = ssl.create_default_context(cafile=setup.proxy_ca)
        self.background: set[asyncio.Task[None]] = set()

    def later(self, coro: Coroutine[Any, Any, None]) -> None:
        """Check something in the background (how a connection ends) and go on."""
        task = asyncio.create_task(coro)
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    def running(self, i: int) -> bool:
        return time.monotonic() < self.stop_at and i < self.max_iter

    async def pause(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, min(seconds, self.stop_at - time.monotonic())))
