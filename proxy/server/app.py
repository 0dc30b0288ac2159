"""The running proxy: one asyncio server per mode, a watchdog, shutdown.

``ProxyServer`` binds every listener, shares one upstream pool and one
dispatcher of flow records between them, runs a once-a-second watchdog that
enforces the idle timeouts (cheaper than a timer per request), and shuts
down gracefully: stop accepting, close idle connections, let in-flight
exchanges finish within a deadline, then flush the sinks.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import ssl
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from OpenSSL import SSL

from proxy.config import ModeSpec
from proxy.flow.record import FlowRecord
from proxy.rules import RuleSet, RulesWatcher
from proxy.server import entries, heap, transparent
from proxy.server.client import ClientConnection
from proxy.server.context import (
    EntryFactory,
    InterceptContext,
    ListenerContext,
    Registry,
    Timeouts,
)
from proxy.server.hooks import HookBus
from proxy.server.upstream import Pool
from proxy.session.config import SessionConfig
from proxy.session.routing import Bypass, Router
from proxy.sinks.dispatch import Dispatcher
from proxy.sinks.pcap import PcapTap
from proxy.tls import onboarding
from proxy.tls.client import client_context
from proxy.tls.clientcerts import ClientCerts
from proxy.via import with_auth
from proxy.words import plural

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
# Listener kinds whose connections start with their own layers (proxy.server.entries).
ENTRIES: dict[str, EntryFactory] = {"socks5": entries.socks5, "transparent": entries.transparent()}


@dataclass(frozen=True, slots=True)
class ServerOptions:
    modes: list[ModeSpec]
    session: SessionConfig = field(default_factory=SessionConfig)
    timeouts: Timeouts = field(default_factory=Timeouts)
    upstream_tls: SSL.Context | None = None  # None: verify with the system's roots
    pool_per_host: int = 128  # see Pool: one HTTP/2 client's 100 streams fan out to HTTP/1.1
    extra_own_hosts: tuple[str, ...] = field(default=())
    intercept: InterceptContext | None = None
    tap: PcapTap | None = None
    rules: RulesWatcher | None = None  # --rules, polled for changes every second
    max_connections: int = 10_000
    hooks: HookBus = field(default_factory=HookBus)  # the UI, addons, replay, tests
    reuse_port: bool = False  # --workers: every worker binds the same ports
    upstream_auth: str | None = None  # --upstream-auth USER:PASS for upstream:URL modes
    bypass: Bypass | None = None  # --upstream-bypass / NO_PROXY
    client_certs: ClientCerts | None = None  # --client-certs
    proxy_tls: ssl.SSLContext | None = None  # verifies https:// next proxies


class ProxyServer:
    def __init__(self, options: ServerOptions, dispatcher: Dispatcher) -> None:
        self.options = options
        self.dispatcher = dispatcher
        self.registry = Registry()
        self.pool = Pool(options.pool_per_host, options.timeouts.upstream_idle)
        self.upstream_tls = options.upstream_tls or client_context()
        self.servers: list[asyncio.Server] = []
        self.addresses: list[tuple[str, int]] = []
        self._watchdog: asyncio.Task[None] | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        holders: list[list[ListenerContext]] = []
        for mode in self.options.modes:
            holder: list[ListenerContext] = []
            if mode.tproxy:  # TPROXY: the listening socket needs IP_TRANSPARENT first
                sock = transparent.listening_socket(mode.host, mode.port)
                server = await loop.create_server(
                    self._factory(mode, holder), sock=sock, start_serving=False
                )
            else:
                server = await loop.create_server(
                    self._factory(mode, holder), mode.host, mode.port, start_serving=False,
                    reuse_address=True, reuse_port=self.options.reuse_port or None,
                )  # fmt: skip
            self.servers.append(server)
            sockname = server.sockets[0].getsockname()
            self.addresses.append((str(sockname[0]), int(sockname[1])))
            holders.append(holder)
        own = self._own_addresses()
        for mode, holder in zip(self.options.modes, holders, strict=True):
            holder.append(self._context(mode, own))
        for server in self.servers:
            await server.start_serving()
        self._watchdog = loop.create_task(self._watch())

    def _own_addresses(self) -> frozenset[tuple[str, int]]:
        own: set[tuple[str, int]] = set()
        for host, port in self.addresses:
            for name in (host, *LOOPBACK_NAMES, *self.options.extra_own_hosts):
                own.add((name, port))
        return frozenset(own)

    def _context(self, mode: ModeSpec, own: frozenset[tuple[str, int]]) -> ListenerContext:
        intercept = self.options.intercept
        session = replace(
            self.options.session,
            mode=mode.label,
            upstream=mode.upstream if mode.kind == "reverse" else None,
            own_addresses=own,
            intercept=intercept.policy.intercept if intercept is not None else None,
            local_hosts=frozenset({onboarding.HOST}),
            local_responder=self._local_page,
            rules=self._current_rules if self.options.rules is not None else None,
            hooks=self.options.hooks.settings,
            route=self._router(mode),
        )
        return ListenerContext(
            session=session,
            pool=self.pool,
            submit=self.dispatcher.submit,
            timeouts=self.options.timeouts,
            upstream_tls=self.upstream_tls,
            registry=self.registry,
            intercept=intercept,
            tap=self.options.tap,
            hooks=self.options.hooks,
            max_connections=self.options.max_connections,
            client_certs=self.options.client_certs,
            proxy_tls=self.options.proxy_tls,
            entry=entries.transparent(tproxy=True) if mode.tproxy else ENTRIES.get(mode.kind),
        )

    def _router(self, mode: ModeSpec) -> Router | None:
        """How this listener's server connections route (None: always direct)."""
        options = self.options
        via = with_auth(mode.via, options.upstream_auth) if mode.via is not None else None
        if via is None and options.rules is None:
            return None
        rules = self._current_rules if options.rules is not None else None
        return Router(mode.label, via, options.bypass, rules)

    def _current_rules(self) -> RuleSet | None:
        watcher = self.options.rules
        return None if watcher is None else watcher.current

    def _reload_rules(self) -> None:
        """Hot reload: a broken file keeps the last good rules and says why, always."""
        watcher = self.options.rules
        if watcher is None:
            return
        reload = watcher.poll()
        if reload.error is not None:
            message = f"rules not reloaded, keeping the previous ones:\n{reload.error}"
            print(f"tapproxy: {message}", file=sys.stderr, flush=True)
            now = time.time()
            self.dispatcher.submit(
                FlowRecord(
                    id="", kind="rules_error", mode="", start=now, end=now,
                    client=("", 0), server=None, error=message,
                )
            )  # fmt: skip
        elif reload.changed:
            print(
                f"tapproxy: rules reloaded ({plural(len(reload.ruleset), 'rule')})",
                file=sys.stderr,
                flush=True,
            )

    def _local_page(self, host: str, path: bytes) -> bytes:
        intercept = self.options.intercept
        if intercept is None:
            return onboarding.not_enabled()
        return onboarding.respond(intercept.issuer.ca, path)

    @staticmethod
    def _factory(mode: ModeSpec, holder: list[ListenerContext]) -> Callable[[], asyncio.Protocol]:
        if mode.kind == "tcp":
            up = mode.upstream
            assert up is not None
            return lambda: ClientConnection(holder[0], (up.host, up.port))
        return lambda: ClientConnection(holder[0])

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            for conn in list(self.registry.connections):
                conn.check_timeout(now)
            self.pool.sweep(now)
            self._reload_rules()

    def stats(self) -> dict[str, int]:
        """Live counters (printed on SIGUSR1): how leak tests see the proxy from outside."""
        fds = len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else -1
        return {
            "connections": len(self.registry.connections),
            "connections_accepted": self.registry.accepted,
            "pooled_upstreams": self.pool.idle_count,
            "tasks": len(asyncio.all_tasks()),
            "fds": fds,
            "flows_submitted": self.dispatcher.submitted,
            "flows_dropped": self.dispatcher.dropped,
            # What each output could not write (disk full...): issue 14 item 5.
            **self.dispatcher.losses(),
            **(self.options.tap.losses() if self.options.tap is not None else {}),
        }

    def print_stats(self) -> None:
        # A full collection and a heap trim first, so the RSS a leak test
        # reads right after reflects live memory, not garbage waiting for the
        # cyclic collector or free pages glibc has not given back yet.
        gc.collect()
        heap.release_free_memory()
        print("tapproxy-stats " + json.dumps(self.stats()), file=sys.stderr, flush=True)

    async def shutdown(self, timeout: float) -> int:
        """Graceful stop; returns how many connections had to be cut."""
        for server in self.servers:
            server.close()
        deadline = time.monotonic() + timeout
        conns = self.registry.connections
        while conns and time.monotonic() < deadline:
            for conn in list(conns):
                if conn.idle:
                    conn.close_now()
            if conns:
                await asyncio.sleep(0.02)
        cut = len(conns)
        for conn in list(conns):
            conn.close_now()
        if self._watchdog is not None:
            self._watchdog.cancel()
        self.pool.close()
        await asyncio.sleep(0)  # let connection_lost callbacks submit their records
        if self.options.tap is not None:
            self.options.tap.stop()
        return cut
