"""The in-process HTTP/2 stream: what one multiplexed GET costs the sans-IO core.

    python -m bench.h2_stream_bench                 # 20,000 streams, 5 rounds
    python -m bench.h2_stream_bench -n 50000 --rounds 7
    python -m bench.h2_stream_bench --profile 30    # and the top 30 functions (cProfile)

No sockets: the root layer (``ClientLayers``, what the shell drives) of a
``reverse:h2c://`` listener is fed the bytes the shell would feed it, as
bench/h2_bench.py's scenario h loads it (h2load ``-m 100`` through the proxy
to nghttpd): an ``h2`` client connection with prior knowledge sends its
GETs for ``/small`` 100 at a time (``MULTIPLEX``) in one write, each
answered ``200`` with 100 bytes by an ``h2`` server on the one shared
upstream connection, in one write per batch. The client acknowledges what it
receives as h2 does (``acknowledge_received_data``), so WINDOW_UPDATEs flow
as in a real run. Ten rules that match none of the requests are loaded (the
ten every bench/run.py scenario runs with) and the listener's route asks
them, as in the server. Each stream's ``DONE`` flow is then turned into the
flow log's line as the sinks do: ``to_record()``, then
``proxy.flow.jsonview.record_to_json`` and ``proxy.sinks.jsonenc.dumps``.

Only the proxy's own work is measured: the two ``h2`` peers run outside the
meters (``Wire.meter`` wraps each ``ClientLayers.handle`` call). Per stream:

* µs of CPU (best and median of the rounds, ``process_time``: the
  process's own CPU time, so that a shared machine's other load, which
  stretches wall time, counts less), for the layers (``core``) and for the
  record, its JSON view and its encoding (``record``);
* Python and C function calls under cProfile (the profiler's own
  ``disable`` calls left out);
* memory blocks allocated, exact (bench/alloc_counter.py's allocator hook;
  every tuple, dict, str and bytes counts, even one freed at once).

Not a test: figures vary with the machine and its load. Run it pinned and
quiet (``taskset -c 0 nice -n -5``, or at least on an idle machine) and
compare runs of the same build only.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import pstats
import statistics
import sys
import time
from collections import deque
from collections.abc import Callable
from types import ModuleType
from typing import Any

import h2.events as h2ev
from h2.config import H2Configuration
from h2.connection import H2Connection

from bench.alloc_counter import load as load_alloc_counter
from bench.exchange_bench import ruleset
from proxy.flow.hooks import HookKind
from proxy.flow.jsonview import record_to_json
from proxy.layers.commands import CLIENT, Command, Hook, OpenServer, SendData
from proxy.layers.events import DataReceived, Event, ServerOpened
from proxy.layers.root import ClientLayers
from proxy.rules import RuleSet
from proxy.session.config import SessionConfig, Upstream
from proxy.session.routing import Router
from proxy.sinks.jsonenc import dumps

MULTIPLEX = 100  # streams in flight, as h2load -m 100
PEER = ("127.0.0.1", 40_000)
ORIGIN = ("127.0.0.1", 8443)
MODE = "reverse:h2c://127.0.0.1:8443"
REQUEST = [
    (b":method", b"GET"),
    (b":scheme", b"http"),
    (b":authority", b"127.0.0.1:8080"),
    (b":path", b"/small"),
    (b"user-agent", b"h2load nghttp2/1.52.0"),
]
RESPONSE = [
    (b":status", b"200"),
    (b"server", b"nghttpd nghttp2/1.52.0"),
    (b"content-length", b"100"),
    (b"cache-control", b"max-age=3600"),
    (b"date", b"Mon, 07 Dec 2026 21:00:00 GMT"),
    (b"last-modified", b"Mon, 07 Dec 2026 20:00:00 GMT"),
]
BODY = b"x" * 100

Meter = Callable[[Callable[[Event], list[Command]], Event], list[Command]]


def _plain(handle: Callable[[Event], list[Command]], event: Event) -> list[Command]:
    return handle(event)


def config(rules: RuleSet) -> SessionConfig:
    """The session config of a ``reverse:h2c://`` listener with ``--rules``."""

    def current() -> RuleSet:
        return rules

    return SessionConfig(
        mode=MODE,
        upstream=Upstream("http", ORIGIN[0], ORIGIN[1], h2c=True),
        rules=current,
        route=Router(MODE, None, None, current),
    )


def _peer(client_side: bool) -> H2Connection:
    conn = H2Connection(H2Configuration(client_side=client_side, header_encoding=None))
    conn.initiate_connection()
    return conn


class Wire:
    """One client connection's layers between an h2 client and an h2 server."""

    def __init__(self, rules: RuleSet) -> None:
        self.layers = ClientLayers(config(rules), PEER)
        self.client = _peer(client_side=True)
        self.server = _peer(client_side=False)
        self.server_conn: Any = None
        self.next_stream = 1
        self.flows: list[Any] = []
        self.meter: Meter = _plain
        self.answered = 0

    def batch(self, streams: int) -> None:
        """``streams`` GETs in one write; returns once each one's DONE came."""
        client = self.client
        for _ in range(streams):
            client.send_headers(self.next_stream, REQUEST, end_stream=True)
            self.next_stream += 2
        want = len(self.flows) + streams
        self._pump(DataReceived(CLIENT, client.data_to_send()))
        if len(self.flows) != want:
            raise RuntimeError(f"{want - len(self.flows)} streams did not end with a DONE hook")

    def _pump(self, first: Event) -> None:
        queue: deque[Event] = deque([first])
        handle, meter = self.layers.handle, self.meter
        while queue:
            for cmd in meter(handle, queue.popleft()):
                self._command(cmd, queue)
            for peer, conn in ((self.client, CLIENT), (self.server, self.server_conn)):
                data = peer.data_to_send()
                if data:
                    queue.append(DataReceived(conn, data))

    def _command(self, cmd: Command, queue: deque[Event]) -> None:
        kind = type(cmd)
        if kind is SendData:
            assert isinstance(cmd, SendData)
            if cmd.conn.is_client:
                self._to_client(cmd.data)
            else:
                self._to_server(cmd.data)
        elif kind is OpenServer:
            assert isinstance(cmd, OpenServer)
            if self.server_conn is not None:
                raise RuntimeError("a second upstream connection: the streams should share one")
            self.server_conn = cmd.conn
            queue.append(ServerOpened(cmd.conn, ORIGIN, reused=False))
        elif kind is Hook:
            assert isinstance(cmd, Hook)
            if cmd.kind is HookKind.DONE:
                self.flows.append(cmd.flow)

    def _to_client(self, data: bytes) -> None:
        client = self.client
        for event in client.receive_data(data):
            if type(event) is h2ev.DataReceived:
                client.acknowledge_received_data(event.flow_controlled_length, event.stream_id)

    def _to_server(self, data: bytes) -> None:
        server = self.server
        for event in server.receive_data(data):
            if type(event) is h2ev.RequestReceived:
                server.send_headers(event.stream_id, RESPONSE)
                server.send_data(event.stream_id, BODY, end_stream=True)
                self.answered += 1

    def run(self, n: int) -> list[Any]:
        """N streams, ``MULTIPLEX`` at a time; their finished flows."""
        self.flows = []
        for start in range(0, n, MULTIPLEX):
            self.batch(min(MULTIPLEX, n - start))
        return self.flows


def records(flows: list[Any]) -> list[bytes]:
    """The flow log's lines for ``flows``, as the dispatcher and the sinks build them."""
    return [dumps(record_to_json(f.to_record())) for f in flows]


# -- meters ------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.seconds = 0.0

    def __call__(self, handle: Callable[[Event], list[Command]], event: Event) -> list[Command]:
        t0 = time.process_time()
        out = handle(event)
        self.seconds += time.process_time() - t0
        return out


class Allocs:
    def __init__(self, counter: ModuleType) -> None:
        self.count = counter.count
        self.blocks = 0
        start = self.count()
        self.overhead = self.count() - start  # reading the counter allocates its int

    def __call__(self, handle: Callable[[Event], list[Command]], event: Event) -> list[Command]:
        count = self.count
        start = count()
        out = handle(event)
        self.blocks += count() - start - self.overhead
        return out


class Calls:
    def __init__(self) -> None:
        self.profile = cProfile.Profile()

    def __call__(self, handle: Callable[[Event], list[Command]], event: Event) -> list[Command]:
        profile = self.profile
        profile.enable()
        out = handle(event)
        profile.disable()
        return out

    def counts(self) -> tuple[int, int]:
        """(Python, C) calls, the profiler's own ``disable`` left out."""
        py = c = 0
        for entry in self.profile.getstats():
            code = entry.code
            if isinstance(code, str):
                if "disable" not in code:
                    c += entry.callcount
            else:
                py += entry.callcount
        return py, c


# -- the report ----------------------------------------------------------------------


def timings(wire: Wire, n: int, rounds: int) -> tuple[list[float], list[float]]:
    """CPU µs per stream of the layers and of the records, one figure per round."""
    core: list[float] = []
    rec: list[float] = []
    for _ in range(rounds):
        clock = Clock()
        wire.meter = clock
        flows = wire.run(n)
        core.append(clock.seconds * 1e6 / n)
        t0 = time.process_time()
        records(flows)
        rec.append((time.process_time() - t0) * 1e6 / n)
    wire.meter = _plain
    return core, rec


def allocations(wire: Wire, n: int) -> tuple[float, float] | None:
    """Blocks allocated per stream by the layers and by the records."""
    counter = load_alloc_counter()
    if counter is None:
        return None
    gc.collect()
    gc.disable()  # a collection inside would count its own work
    counter.install()
    try:
        allocs = Allocs(counter)
        wire.meter = allocs
        flows = wire.run(n)
        wire.meter = _plain
        start = counter.count()
        records(flows)
        rec = counter.count() - start
    finally:
        counter.uninstall()
        gc.enable()
    return allocs.blocks / n, rec / n


def calls(wire: Wire, n: int, top: int) -> tuple[int, int, int, int]:
    """(Python, C) calls of the layers, then of the records, in all for N streams."""
    meter = Calls()
    wire.meter = meter
    flows = wire.run(n)
    wire.meter = _plain
    prof = cProfile.Profile()
    prof.enable()
    records(flows)
    prof.disable()
    py, c = meter.counts()
    rpy = rc = 0
    for entry in prof.getstats():
        if isinstance(entry.code, str):
            rc += entry.callcount
        else:
            rpy += entry.callcount
    if top:
        print(f"\ncProfile of the layers, {n} streams, top {top} by own time:")
        stats = pstats.Stats(meter.profile, stream=sys.stdout)
        stats.sort_stats("tottime").print_stats(top)
    return py, c, rpy, rc - 1  # less the profiler's disable()


def report(n: int, rounds: int, top: int) -> None:
    rules = ruleset()
    wire = Wire(rules)
    records(wire.run(2000))  # warm-up: the connections open, caches fill
    core, rec = timings(wire, n, rounds)
    allocs = allocations(wire, n)
    py, c, rpy, rc = calls(wire, n, top)

    print(f"\nbench/h2_stream_bench.py: {n} streams, {MULTIPLEX} at a time, x {rounds} rounds,")
    print("one h2c client connection, one shared h2c upstream connection,")
    print(f"{len(rules.rules)} non-matching rules, Python {sys.version.split()[0]}")
    columns = ("CPU µs best", "median", "blocks", "py calls", "C calls")
    print(f"{'per stream':<10}" + "".join(f" {col:>10}" for col in columns))
    rows = {
        "core": (min(core), statistics.median(core), allocs[0] if allocs else float("nan"),
                 py / n, c / n),
        "record": (min(rec), statistics.median(rec), allocs[1] if allocs else float("nan"),
                   rpy / n, rc / n),
    }  # fmt: skip
    total = [a + b for a, b in zip(rows["core"], rows["record"], strict=True)]
    for name, row in (*rows.items(), ("total", tuple(total))):
        print(f"{name:<10}" + "".join(f" {v:10.1f}" for v in row))
    if allocs is None:
        print("blocks: not measured (no C compiler or Python headers for bench/alloc_counter.py)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=20_000, help="streams per round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--profile", type=int, default=0, metavar="TOP", help="print the top functions")
    args = ap.parse_args()
    report(args.n, args.rounds, args.profile)


if __name__ == "__main__":
    main()
