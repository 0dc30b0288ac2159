"""HTTP/2 flood guards through a live proxy: each trips under its attack, and
a client that was already connected, and a new one, are served throughout.

The attacker speaks raw HTTP/2 (``tests.support.h2raw``); the bystanders
make ordinary requests to a reverse listener in front of an HTTP/1.1
backend. Limits are in docs/limits.md (HTTP/2).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from h2.errors import ErrorCodes

from proxy.layers.http2.floods import LIMITS, Flood
from tests.support.h1backend import H1Backend
from tests.support.h2raw import RawH2
from tests.support.proxyproc import ProxyProcess, start_proxy
from tests.support.upstreams import Upstreams

GET = [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"a.test"), (b":path", b"/")]


@pytest.fixture(scope="module")
def backend(upstreams: Upstreams) -> H1Backend:
    return H1Backend(upstreams)


@pytest.fixture()
def proxy(backend: H1Backend, tmp_path: Path) -> Iterator[ProxyProcess]:
    p = start_proxy(
        "--mode", "reverse:http://" + backend.auth.decode(), flow_log=tmp_path / "flows.jsonl"
    )
    yield p
    p.stop()


def rapid_reset(c: RawH2) -> None:
    for _ in range(LIMITS[Flood.RESET] + 1):
        stream = c.conn.get_next_available_stream_id()
        c.conn.send_headers(stream, GET, end_stream=True)
        c.conn.reset_stream(stream, ErrorCodes.CANCEL)
    c.flush()


def pings(c: RawH2) -> None:
    for i in range(LIMITS[Flood.PING] + 1):
        c.conn.ping(b"%08d" % i)
    c.flush()


def settings(c: RawH2) -> None:
    for i in range(LIMITS[Flood.SETTINGS] + 1):
        c.conn.update_settings({4: 65535 + i})  # SETTINGS_INITIAL_WINDOW_SIZE
    c.flush()


def empty_data(c: RawH2) -> None:
    stream = c.request(GET, end=False)
    for _ in range(LIMITS[Flood.EMPTY] + 1):
        c.conn.send_data(stream, b"")
    c.flush()


@pytest.mark.parametrize(
    ("attack", "name"),
    [
        (rapid_reset, "RST_STREAM"),
        (pings, "PING"),
        (settings, "SETTINGS"),
        (empty_data, "empty DATA or PRIORITY"),
    ],
)
def test_flood_trips_and_others_are_served(
    proxy: ProxyProcess, attack: Callable[[RawH2], None], name: str
) -> None:
    with RawH2(proxy.port) as bystander, RawH2(proxy.port) as attacker:
        assert bystander.wait(bystander.request(GET)).status == 200
        attack(attacker)
        result = attacker.wait(attacker.conn.get_next_available_stream_id(), timeout=10)
        assert result.goaway == ErrorCodes.ENHANCE_YOUR_CALM or attacker.goaway == 11
        assert bystander.wait(bystander.request(GET)).status == 200  # still served
    with RawH2(proxy.port) as newcomer:
        assert newcomer.wait(newcomer.request(GET)).status == 200
    assert proxy.stop() == 0  # the flow log is complete once the proxy has stopped
    assert proxy.flow_log is not None
    records = [json.loads(line) for line in proxy.flow_log.read_text().splitlines()]
    errors = [str(r["error"]) for r in records if r.get("error")]
    assert any(f"{name} flood" in e for e in errors), errors
