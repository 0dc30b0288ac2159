"""``/metrics`` (proxy/web/metrics.py): the exposition parses, and its counters are the records'."""

from __future__ import annotations

from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from proxy.flow.grpcinfo import GrpcCall
from proxy.flow.jsonview import record_to_json
from proxy.flow.record import (
    FlowRecord,
    Message,
    RequestInfo,
    ResponseInfo,
    RulesInfo,
    TunnelInfo,
)
from proxy.flow.wsinfo import WsMessage
from proxy.web.metrics import ProxyMetrics, error_cause
from proxy.web.store import FlowStore
from proxy.web.storesink import StoreSink

T0 = 1_795_000_000.0


def http(i: int, status: int | None, *, duration: float = 0.02, **over: Any) -> FlowRecord:
    fields: dict[str, Any] = {
        "id": f"h{i}", "kind": "http", "mode": "regular", "start": T0, "end": T0 + duration,
        "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 80),
        "request": RequestInfo(b"POST", "http://a.test/", Message((), 10, b"")),
    }  # fmt: skip
    if status is not None:
        fields["response"] = ResponseInfo(status, b"", Message((), 100, b""))
    fields.update(over)
    return FlowRecord(**fields)


def samples(metrics: ProxyMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the exposition, parsed by prometheus-client's own parser."""
    text = metrics.exposition().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_counters_equal_the_records_fed() -> None:
    stats = {"connections": 3, "connections_accepted": 41}
    store = FlowStore()
    metrics = ProxyMetrics(lambda: stats, store)
    rules = RulesInfo((("mock", "r.yaml:1", ("respond",)), ("mock", "r.yaml:1", ("delay",))))
    grpc = GrpcCall("grpc", "S", "M", "unary", "counts", 1, 1, None, None, None, False)
    tunnel = TunnelInfo(1_000, 2_000, "fin", "fin")
    batch1 = [http(i, 200) for i in range(7)] + [
        http(7, 404, rules=rules),
        http(8, None, error="upstream: connection refused"),
        http(9, 200, grpc=grpc, duration=2.0),
    ]
    batch2 = [
        FlowRecord("t1", "tunnel", "regular", T0, T0 + 5, ("h", 1), ("s", 443), tunnel=tunnel),
        FlowRecord(
            "m1",
            "websocket_message",
            "regular",
            T0,
            T0,
            ("h", 1),
            None,
            message=WsMessage("x", "upstream", 0, "text", 5, 7, 1, False, b"hello", False),
        ),
        http(10, 504, error="timeout (read) waiting for http://a.test/", duration=30.5),
    ]
    sink = StoreSink(store, observer=metrics, close_store=False)
    for batch in (batch1, batch2):  # as the proxy's sink counts them: when indexed
        sink.prepare(batch)
        sink.index_all()
    got = samples(metrics)

    def flows(protocol: str, status: str) -> float:
        key = (("protocol", protocol), ("status_class", status))
        return got.get(("tapproxy_flows_total", key), 0)

    assert flows("HTTP/1.1", "2xx") == 7 and flows("HTTP/1.1", "4xx") == 1
    assert flows("HTTP/1.1", "error") == 1 and flows("HTTP/1.1", "5xx") == 1
    assert flows("gRPC", "2xx") == 1 and flows("tunnel", "none") == 1
    assert sum(v for (name, _), v in got.items() if name == "tapproxy_flows_total") == 12
    # bodies: 11 requests of 10 bytes, 10 responses of 100; the tunnel's bytes
    assert got["tapproxy_bytes_total", (("direction", "upstream"),)] == 110 + 1_000
    assert got["tapproxy_bytes_total", (("direction", "downstream"),)] == 1_000 + 2_000
    assert got["tapproxy_rule_hits_total", (("rule", "mock"),)] == 1  # one flow, one hit
    assert got["tapproxy_errors_total", (("cause", "connect_refused"),)] == 1
    assert got["tapproxy_errors_total", (("cause", "timeout"),)] == 1
    assert got["tapproxy_request_duration_seconds_count", ()] == 11  # HTTP flows only
    assert got["tapproxy_request_duration_seconds_bucket", (("le", "0.025"),)] == 9
    assert got["tapproxy_request_duration_seconds_bucket", (("le", "2.5"),)] == 10
    assert got["tapproxy_request_duration_seconds_bucket", (("le", "+Inf"),)] == 11
    assert abs(got["tapproxy_request_duration_seconds_sum", ()] - (9 * 0.02 + 2 + 30.5)) < 1e-6
    assert got["tapproxy_connections_total", ()] == 41
    assert got["tapproxy_connections_open", ()] == 3
    assert got["tapproxy_store_flows", ()] == 12 and got["tapproxy_store_dropped_total", ()] == 0
    store.close()


def test_store_gauges_follow_the_store() -> None:
    from tests.unit.test_web_store import row

    store = FlowStore(max_flows=3)
    try:
        metrics = ProxyMetrics(store=store)
        store.add_many([row(i) for i in range(5)])
        got = samples(metrics)
        assert got["tapproxy_store_flows", ()] == 3
        assert got["tapproxy_store_dropped_total", ()] == 2
        assert got["tapproxy_store_bytes", ()] == store.size_bytes > 0
        assert not any(name.startswith("tapproxy_connections") for name, _ in got)
    finally:
        store.close()


def test_each_instance_has_its_own_registry() -> None:
    a, b = ProxyMetrics(), ProxyMetrics()
    a.observe([record_to_json(http(1, 200))])
    assert samples(a)["tapproxy_flows_total", (("protocol", "HTTP/1.1"), ("status_class", "2xx"))]
    assert not any(name == "tapproxy_flows_total" for name, _ in samples(b))


def test_error_causes() -> None:
    cases = {
        "upstream: connection refused": "connect_refused",
        "upstream: name not resolved (Name or service not known)": "dns",
        "upstream: certificate verification failed: self-signed": "tls",
        "upstream: TLS handshake failed: alert 40": "tls",
        "timeout (read) waiting for https://a.test/": "timeout",
        "client: timeout (head): the request head never completed": "timeout",
        "rule block-ads: block": "rule",
        "killed by a hook": "rule",
        "upstream: connection reset": "reset",
        "client reset the stream (CANCEL)": "reset",
        "client closed the connection": "client_closed",
        "client: malformed HTTP/2 request: bad": "protocol",
        "refused: a request head over 64 KiB": "protocol",
        "something else": "other",
    }
    assert {text: error_cause(text) for text in cases} == cases
