"""``/metrics``: the proxy's counters in the Prometheus text format (docs/api.md).

Written with ``prometheus-client`` (its exposition and parser are the
reference), on a ``CollectorRegistry`` of this instance's own: nothing
goes to the library's global registry, so two proxies in one process (the
tests) never share counters.

Counted from the flows' records as the flow log writes them (``observe``,
called by the store sink as it indexes a batch, ``proxy.web.storewait``;
``/metrics`` indexes what waits first, so a scrape sees every finished
flow), each label set incremented once per batch:

* ``tapproxy_flows_total{protocol,status_class}``: finished flows (message
  records are not flows); ``protocol`` as the UI shows it
  (``proxy.web.summary.protocol``), ``status_class`` ``1xx``..``5xx``, or
  ``error`` (no response, an error) or ``none`` (no response: a tunnel, TCP).
* ``tapproxy_bytes_total{direction}``: body bytes of HTTP messages and the
  bytes a tunnel, TCP relay or WebSocket carried; ``upstream`` (client to
  server, as the client sent them) and ``downstream`` (as the client got them).
* ``tapproxy_rule_hits_total{rule}``: flows each rule matched.
* ``tapproxy_errors_total{cause}``: flows that ended with an error, by
  ``error_cause`` below.
* ``tapproxy_request_duration_seconds``: a histogram of HTTP flows' duration,
  from the request's start to the response's end.

Read when scraped: ``tapproxy_connections_total`` (client connections
accepted, ``ProxyServer.stats``'s ``connections_accepted``) and
``tapproxy_connections_open`` (``connections``), and the store's
``tapproxy_store_flows``, ``tapproxy_store_bytes``, ``tapproxy_store_dropped_total``.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Callable, Iterator, Sequence
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from proxy.web.summary import Json, body_bytes, protocol, rule_names

#: Seconds: from a fast local answer to a long poll.
DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

#: ``tapproxy_errors_total``'s causes, tried in order on the error's text
#: (lower case): the first whose words it contains wins, else ``other``.
#: The texts come from ``proxy.server.connecterrors.describe_error`` (connect
#: failures), the sessions (``client: ...``, ``upstream ...``, timeouts) and
#: the rules (``rule NAME: ...``, ``killed by a hook``).
ERROR_CAUSES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("connect_refused", ("connection refused",)),
    ("dns", ("name not resolved", "idna")),
    ("timeout", ("timeout", "timed out")),
    ("tls", ("tls", "certificate", "ssl", "handshake")),
    ("rule", ("rule ", "by a hook", "a hook's")),
    ("reset", ("reset",)),
    ("client_closed", ("client closed",)),
    ("protocol", ("malformed", "protocol", "http/2", "invalid", "refused:", "goaway", "framing")),
)


def error_cause(error: str) -> str:
    """The short class of an error text, for the ``cause`` label (see ``ERROR_CAUSES``)."""
    text = error.lower()
    for cause, words in ERROR_CAUSES:
        if any(w in text for w in words):
            return cause
    return "other"


def status_class(r: Json) -> str:
    response = r.get("response")
    if response is not None:
        return f"{int(response['status']) // 100}xx"
    return "error" if r.get("error") else "none"


class StoreStats(Protocol):
    """What ``/metrics`` reads of the flow store (``proxy.web.store.FlowStore``)."""

    @property
    def count(self) -> int: ...
    @property
    def size_bytes(self) -> int: ...
    @property
    def dropped(self) -> int: ...


class _NoStore:
    count = size_bytes = dropped = 0


class _Scraped(Collector):
    """The values read at each scrape: connections and the store."""

    def __init__(
        self, stats: Callable[[], dict[str, int]] | None, store: StoreStats | None
    ) -> None:
        self.stats = stats
        self.store = store

    def describe(self) -> Iterator[Metric]:
        """The families without reading anything (the registry asks at ``register``)."""
        return self._families({}, _NoStore() if self.store is not None else None)

    def collect(self) -> Iterator[Metric]:
        stats = self.stats() if self.stats is not None else {}
        return self._families(stats, self.store)

    def _families(self, stats: dict[str, int], store: StoreStats | None) -> Iterator[Metric]:
        if self.stats is not None:
            yield CounterMetricFamily(
                "tapproxy_connections",
                "Client connections accepted since start.",
                value=stats.get("connections_accepted", 0),
            )
            yield GaugeMetricFamily(
                "tapproxy_connections_open",
                "Client connections open now.",
                value=stats.get("connections", 0),
            )
        if store is not None:
            yield GaugeMetricFamily(
                "tapproxy_store_flows", "Flows in the web UI's store.", value=store.count
            )
            yield GaugeMetricFamily(
                "tapproxy_store_bytes",
                "Bytes of records, bodies and messages in the store.",
                value=store.size_bytes,
            )
            yield CounterMetricFamily(
                "tapproxy_store_dropped",
                "Flows the store dropped, oldest first, to stay within its caps.",
                value=store.dropped,
            )


class ProxyMetrics:
    """The counters of one proxy; ``exposition`` is ``/metrics``'s body."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(
        self,
        stats: Callable[[], dict[str, int]] | None = None,
        store: StoreStats | None = None,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.flows = Counter(
            "tapproxy_flows", "Finished flows.", ["protocol", "status_class"], registry=r
        )
        self.bytes = Counter(
            "tapproxy_bytes", "Body and tunnel bytes of finished flows.", ["direction"], registry=r
        )
        self.rule_hits = Counter(
            "tapproxy_rule_hits", "Flows each rule matched.", ["rule"], registry=r
        )
        self.errors = Counter(
            "tapproxy_errors", "Flows that ended with an error, by cause.", ["cause"], registry=r
        )
        self.duration = Histogram(
            "tapproxy_request_duration_seconds",
            "Duration of HTTP flows, request start to response end.",
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        for direction in ("upstream", "downstream"):
            self.bytes.labels(direction)  # shown from the start, at 0
        r.register(_Scraped(stats, store))

    def observe(self, records: Sequence[Json]) -> None:
        """Count a batch of finished flows' records (flow-log JSON; message
        records are not flows and are not given): one increment per label set."""
        flows: Tally[tuple[str, str]] = Tally()
        rules: Tally[str] = Tally()
        errors: Tally[str] = Tally()
        up = down = 0
        for r in records:
            flows[protocol(r), status_class(r)] += 1
            sent, got = body_bytes(r)
            up += sent
            down += got
            rules.update(rule_names(r))
            error = r.get("error")
            if error:
                errors[error_cause(str(error))] += 1
            if r.get("kind") == "http" and "request" in r:
                self.duration.observe(max(float(r.get("duration_ms") or 0) / 1000, 0.0))
        for (proto, status), n in flows.items():
            self.flows.labels(proto, status).inc(n)
        for name, n in rules.items():
            self.rule_hits.labels(name).inc(n)
        for cause, n in errors.items():
            self.errors.labels(cause).inc(n)
        if up:
            self.bytes.labels("upstream").inc(up)
        if down:
            self.bytes.labels("downstream").inc(down)

    def exposition(self) -> bytes:
        """The text format (``Content-Type: content_type``)."""
        return generate_latest(self.registry)
