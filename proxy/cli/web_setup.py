"""``--web``: the web UI's parts made from the options and wired into the proxy.

The store and its sink, the live feed and the breakpoints (two hook
subscribers), the metrics, and the server itself, started on the proxy's
loop once the listeners are up (the start line names the URL and token).
Imported only with ``--web``: aiohttp's server costs nothing otherwise.
"""

from __future__ import annotations

import argparse
import secrets
import sys
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from proxy import __version__
from proxy.cli.replay_setup import load_flows
from proxy.config import ConfigError
from proxy.flow.hooks import HoldSwitch, HookKind, LiveFlow, LiveMessage
from proxy.flowfilter import Subject, json_subject, live_subject, parse
from proxy.replay.toflow import flow_record
from proxy.server.app import ProxyServer, ServerOptions
from proxy.server.hooks import HookBus
from proxy.sinks.encoded import EncodedRecords
from proxy.web.context import Predicate, WebContext
from proxy.web.feed import LiveFeed
from proxy.web.intercept import Breakpoints, Matcher
from proxy.web.metrics import ProxyMetrics
from proxy.web.resend import Entry, Resender
from proxy.web.rows import Summary
from proxy.web.server import WebServer
from proxy.web.store import FlowStore, StoredFlow
from proxy.web.storesink import StoreSink

FORWARD_MODES = ("regular", "upstream")
#: Flows of a loaded file stored per transaction.
PRELOAD_BATCH = 512


def store_predicate(expr: str) -> Predicate:
    flt = parse(expr)

    def matches(flow: StoredFlow) -> bool:
        return flt.matches(json_subject(flow.record, flow.body, bool(flow.summary.get("marked"))))

    return matches


def live_matcher(expr: str) -> Matcher:
    flt = parse(expr)

    def matches(flow: LiveFlow | LiveMessage, kind: HookKind) -> bool:
        if isinstance(flow, LiveMessage):
            return flt.matches(message_subject(flow))
        return flt.matches(live_subject(flow))

    return matches


def message_subject(m: LiveMessage) -> Subject:
    """A held WebSocket message as its connection with this one message as the
    body of its side: ``~websocket``, ``~u``, ``~bq`` (from the client) and
    ``~bs`` (from the server) apply."""
    record = {"kind": "websocket", "request": {"method": "GET", "url": m.url, "headers": []}}
    side = "request" if m.from_client else "response"
    return json_subject(record, lambda asked: m.payload if asked == side else None)


class WebUi:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.token: str = args.web_token or secrets.token_urlsafe(18)
        self.store = FlowStore(
            args.web_store, max_flows=args.web_max_flows, max_size=args.web_max_store_size
        )
        switch = HoldSwitch()  # what the UI arms while the proxy runs, shared by both
        self.feed = LiveFeed(switch)
        self._dropped = self.store.dropped
        self.breakpoints = Breakpoints(
            live_matcher, args.web_hold_timeout, self._held_changed, switch
        )
        self._proxy: ProxyServer | None = None  # known once it started
        self._sink: StoreSink | None = None  # the dispatcher's, once made
        self.metrics = ProxyMetrics(self._stats, self.store)
        self.server: WebServer | None = None

    def _stats(self) -> dict[str, int]:
        return self._proxy.stats() if self._proxy is not None else {}

    def _held_changed(self, flow_id: str, phase: str | None) -> None:
        state = "held" if phase else "live"
        self.feed.publish({"type": "flow", "flow": {"id": flow_id, "state": state, "held": phase}})

    def wire(self, options: ServerOptions) -> ServerOptions:
        """The options with the UI's subscribers and body capture for the store."""
        hooks = HookBus([*options.hooks.subscribers, self.feed, self.breakpoints])
        capture = options.session.capture
        if not capture.on:  # the store keeps bodies up to its own cap
            capture = replace(capture, max_body=self.store.max_body)
        session = replace(options.session, capture=replace(capture, record=True))
        return replace(options, hooks=hooks, session=session)

    def preload(self, path: str) -> int:
        """``-r FILE --web``: a recording's or HAR's flows into the store, oldest first."""
        flows = load_flows(path)
        sink = StoreSink(self.store, close_store=False)
        for i in range(0, len(flows), PRELOAD_BATCH):
            sink.prepare([flow_record(f) for f in flows[i : i + PRELOAD_BATCH]])
            sink.index_all()
        return len(flows)

    def sink(self, encoded: EncodedRecords | None = None) -> StoreSink:
        self._sink = StoreSink(
            self.store, self._rows, self.metrics, encoded=encoded, live=lambda: self.feed.watched
        )
        return self._sink

    async def _sync(self) -> None:
        if self._sink is not None:
            await self._sink.indexer.sync()

    def _rows(self, summaries: list[Summary]) -> None:
        """Finished flows for the browsers, and the store's drops once they happen."""
        self.feed.rows(summaries)
        dropped = self.store.dropped
        if dropped != self._dropped:
            self._dropped = dropped
            self.feed.publish({"type": "dropped", "dropped": dropped, "stored": self.store.count})

    async def start(self, proxy: ProxyServer) -> str:
        """Serve the UI; the line to print (its URL with the token)."""
        entry = _entry(proxy, self.args)
        self._proxy = proxy
        ctx = WebContext(
            token=self.token,
            store=self.store,
            feed=self.feed,
            breakpoints=self.breakpoints,
            metrics=self.metrics,
            compile_filter=store_predicate,
            resend=Resender(entry),
            reload_rules=_reloader(proxy),
            status=lambda: _status(proxy),
            sync=self._sync,
        )
        self.server = WebServer(ctx, self.args.web_host, self.args.web_port)
        try:
            host, port = await self.server.start()
        except OSError as e:
            raise ConfigError(f"cannot serve the web UI on {self.args.web_host}:"
                              f"{self.args.web_port}: {e.strerror or e}") from e  # fmt: skip
        shown = f"[{host}]" if ":" in host else host
        url = f"http://{shown}:{port}/?token={self.token}"
        return f"tapproxy: web UI listening at {shown}:{port}, open {url}"

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop()


def _entry(proxy: ProxyServer, args: argparse.Namespace) -> Entry:
    options = proxy.options
    ca = options.intercept.ca_path if options.intercept is not None else None
    pairs = list(zip(options.modes, proxy.addresses, strict=True))
    for mode, (host, port) in pairs:
        if mode.kind in FORWARD_MODES:
            return Entry(_reach(host), port, True, ca, args.proxy_auth)
    mode, (host, port) = pairs[0]
    return Entry(_reach(host), port, False, ca, None)


def _reach(host: str) -> str:
    """Where to connect to reach a listener bound to ``host``."""
    return {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)


def _reloader(proxy: ProxyServer) -> Callable[[], int] | None:
    watcher = proxy.options.rules
    if watcher is None:
        return None

    def reload() -> int:
        watcher.stamps = {}  # read the files now, changed or not
        result = watcher.poll()
        if result.error is not None:
            raise ConfigError(str(result.error))
        return len(result.ruleset)

    return reload


def _status(proxy: ProxyServer) -> dict[str, Any]:
    listeners = [
        f"{host}:{port} {mode.label}"
        for mode, (host, port) in zip(proxy.options.modes, proxy.addresses, strict=True)
    ]
    return {"version": __version__, "listeners": listeners}


def announce(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
