"""What the web UI's handlers share: the store, the feed, the breakpoints, and
the proxy's hooks for what only the proxy can do (resend, reload the rules,
report its status). Built once by ``proxy.cli.web_setup`` and passed to the
app explicitly (``app[WEB]``), never global."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web

from proxy.web.feed import LiveFeed
from proxy.web.intercept import Breakpoints
from proxy.web.store import FlowStore, StoredFlow

#: A compiled list filter over stored flows.
Predicate = Callable[[StoredFlow], bool]


class Exposition(Protocol):
    """The metrics of ``/metrics`` (``proxy.web.metrics.Metrics``)."""

    def exposition(self) -> bytes: ...


@dataclass(frozen=True, slots=True)
class Resent:
    """What a resent request got: its status, or why it failed."""

    status: int | None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class WebContext:
    token: str
    store: FlowStore
    feed: LiveFeed
    breakpoints: Breakpoints
    metrics: Exposition
    # A filter expression compiled for the store (raises FilterError with a column).
    compile_filter: Callable[[str], Predicate]
    # Sends a request again through the proxy: (method, url, headers, body).
    resend: Callable[[str, str, list[tuple[str, str]], bytes], Awaitable[Resent]]
    # Reloads --rules: the number of rules, or raises ConfigError (file:line:column).
    reload_rules: Callable[[], int] | None
    # The proxy's own facts for /api/status (listeners, version).
    status: Callable[[], dict[str, Any]]
    # Indexes the flows waiting in the store (``proxy.web.indexing``); every
    # API request awaits it first.
    sync: Callable[[], Awaitable[None]]


WEB = web.AppKey("tapproxy", WebContext)
