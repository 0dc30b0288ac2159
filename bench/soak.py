"""Soak test: tapproxy under mixed traffic for a long time, with leak checks.

``python -m bench.soak [--minutes 30] [--report FILE]``

Starts, on 127.0.0.1 only:

* an upstream process (``python -m bench.soak --serve-upstreams DIR``): the
  aiohttp test app of ``tests/support/upstreams.py`` over HTTP and over HTTPS
  (a throwaway test CA, ``tests/support/certs.py``), and three faulty raw
  servers: ``reset`` (RST before the response, or in the middle of its body),
  ``garbage`` (bytes that are not HTTP, or a broken chunked body) and
  ``silent`` (reads the request, never answers);
* tapproxy with the flow log (rotated, so rotation is exercised too),
  ``--mitm`` with a temp certs dir and ``--upstream-ca`` for the test CA,
  a rules file whose rules match (a header set on ``/echo``, a body replaced
  on ``/echo/replace``, a delay on ``/echo/delay``, ``/blocked`` blocked,
  ``/mock`` answered), and short ``--client-head-timeout`` and
  ``--response-head-timeout`` so that they fire;
* load, in this process, capped at ``--rate`` requests per second overall:
  keep-alive aiohttp clients (small GETs and POSTs, every rule path), raw
  new-connection-per-request clients, large downloads and uploads (20-50 MiB,
  checked by size and SHA-256), HTTPS through intercepted CONNECT tunnels
  (raw sockets + TLS trusting the proxy's CA), slow readers, slow-header
  clients (a stalled head and a trickled head), and requests to the faulty
  upstreams.

Every exchange is classified by the client as ``ok`` (the expected complete
response), ``fault`` (the expected outcome of an injected fault: the 502/504
the proxy answers, or the connection cut when the fault hit in the middle of
a body) or ``unexpected`` (anything else; the first 20 distinct texts are
kept). The proxy's RSS, descriptors and SIGUSR1 counters are sampled every
10 s; RSS twice, before the signal (raw) and right after the stats line
(held: the proxy runs gc.collect() and malloc_trim(0) before printing it,
so free heap pages glibc had kept are gone). The flatness check is on the
held RSS; docs/reliability.md says why. After the load stops and
connections settle, descriptors are compared with the baseline taken (the
same way) before the load; then the proxy gets SIGTERM and the flow-log
records are reconciled with what the clients counted. The report is
printed and, with ``--report``, written as Markdown.

This module runs the phases (upstreams, proxy, priming and baseline, load,
settling, shutdown, reconciliation). The parts: ``bench.soak_upstreams``,
the clients (``bench.soak_load``, ``soak_http``, ``soak_tls``,
``soak_misbehave``, over ``soak_wire``, counted by ``soak_tally``), the
proxy watched (``bench.soak_watch``), the flow log counted
(``bench.soak_flows``) and the report (``bench.soak_report``).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from functools import partial
from pathlib import Path
from typing import Any

from bench.soak_flows import count_flows
from bench.soak_http import keepalive, large_download, large_upload, newconn
from bench.soak_load import (
    CLIENT_HEAD_TIMEOUT,
    RESPONSE_HEAD_TIMEOUT,
    UPSTREAM_IDLE_TIMEOUT,
    Load,
    Setup,
)
from bench.soak_misbehave import fault_garbage, fault_reset, fault_silent, slow_reader, slowloris
from bench.soak_report import Result, render
from bench.soak_tls import https
from bench.soak_upstreams import serve_upstreams
from bench.soak_watch import Watched, rss_kb, sample_loop, settle, summary

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # tests.support is used for the upstream app and the CA
    sys.path.insert(0, str(ROOT))

RULES_YAML = """\
version: 1
rules:
  - name: soak-set-header
    match: {path: {prefix: /echo}}
    request:
      - set_header: {x-soak: "1"}
    response:
      - set_header: {x-soak-rule: echo}
  - name: soak-replace-body
    match: {path: /echo/replace}
    response:
      - replace_body: {literal: needle, with: thread}
  - name: soak-delay
    match: {path: /echo/delay}
    fault: {phase: request, delay: {ms: 50}}
  - name: soak-block
    match: {path: /blocked}
    block: {status: 403, body: "blocked by soak\\n"}
  - name: soak-mock
    match: {path: /mock}
    respond: {status: 200, headers: {content-type: text/plain}, body: "mocked\\n"}
"""


async def run_load(load: Load, seconds: float) -> None:
    """Every client at once for ``seconds``; each loop also ends after ``max_iter`` rounds."""
    load.stop_at = time.monotonic() + seconds
    # Generous: no loop can do more than the rate allows anyway.
    load.max_iter = int(seconds * load.s.rate) + 1000
    workers: list[tuple[str, Callable[[str], Coroutine[Any, Any, None]]]] = [
        *[(f"keepalive-{i}", partial(keepalive, load)) for i in range(3)],
        *[(f"newconn-{i}", partial(newconn, load)) for i in range(2)],
        *[(f"https-{i}", partial(https, load)) for i in range(2)],
        ("large-download", partial(large_download, load)),
        ("large-upload", partial(large_upload, load)),
        ("slow-reader", partial(slow_reader, load)),
        ("slowloris", partial(slowloris, load)),
        ("fault-reset", partial(fault_reset, load)),
        ("fault-garbage", partial(fault_garbage, load)),
        ("fault-silent", partial(fault_silent, load)),
    ]
    tasks = [asyncio.create_task(fn(name), name=name) for name, fn in workers]
    # Every operation inside has its own timeout; this only guards the guard.
    done, pending = await asyncio.wait(tasks, timeout=seconds + 300)
    for t in pending:
        load.tally.error(t.get_name(), "worker still running 300 s after the end: cancelled")
        t.cancel()
    for t in done:
        if t.exception() is not None:
            load.tally.error(t.get_name(), t.exception())  # type: ignore[arg-type]
    if load.background:  # each has its own timeout
        await asyncio.wait(list(load.background), timeout=60)


async def run_soak(args: argparse.Namespace, work: Path) -> Result:
    started = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    rev = revision()
    up_log = open(work / "upstreams.log", "wb")  # noqa: SIM115
    upstreams = subprocess.Popen(
        [sys.executable, "-m", "bench.soak", "--serve-upstreams", str(work)],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=up_log, cwd=ROOT,
    )  # fmt: skip
    assert upstreams.stdout is not None
    info = json.loads(upstreams.stdout.readline() or b"{}")
    if "ports" not in info:
        raise RuntimeError(f"upstreams did not start; see {work / 'upstreams.log'}")
    ports: dict[str, int] = info["ports"]
    (work / "rules.yaml").write_text(RULES_YAML)
    cmd = [
        sys.executable, "-m", "proxy", "-q", "-p", "0",
        "--flow-log", str(work / "flows.jsonl"),
        "--flow-log-max-size", "64M", "--flow-log-keep", "1000",
        "--mitm", "--certs", str(work / "certs"), "--upstream-ca", info["ca"],
        "--rules", str(work / "rules.yaml"),
        "--client-head-timeout", f"{CLIENT_HEAD_TIMEOUT:g}",
        "--response-head-timeout", f"{RESPONSE_HEAD_TIMEOUT:g}",
        "--upstream-idle-timeout", f"{UPSTREAM_IDLE_TIMEOUT:g}",
        "--max-connections", "1000",
    ]  # fmt: skip
    proxy: Watched | None = None
    try:
        proxy = Watched(cmd)
        setup = Setup(
            proxy.port, ports, str(work / "certs" / "tapproxy-ca.pem"), args.rate
        )  # fmt: skip
        total = args.minutes * 60
        warmup = min(60.0, max(20.0, total * 0.05))
        log = print if args.verbose else (lambda *a, **k: None)

        # A little of everything first, so that lazily opened files and the first
        # leaf certificate count in the baseline; then settle and take it.
        prime = Load(setup, args.seed + 1)
        await run_load(prime, 3.0)
        if prime.tally.unexpected:
            print("soak: errors while priming:", file=sys.stderr)
            for count, example in prime.tally.errors.values():
                print(f"  {count} x {example}", file=sys.stderr)
        baseline, baseline_settle = await settle(proxy, 120, log)
        log(f"soak: baseline {summary(baseline)}", flush=True)

        load = Load(setup, args.seed)
        load.tally = prime.tally  # the flow log holds the priming exchanges too
        samples: list[dict[str, Any]] = []
        stop = asyncio.Event()
        sampler = asyncio.create_task(sample_loop(proxy, samples, stop))
        progress = asyncio.create_task(report_progress(load, samples, log))
        t0 = time.monotonic()
        await run_load(load, total)
        load_seconds = time.monotonic() - t0
        stop.set()
        progress.cancel()
        await sampler
        for s in samples:
            s["t"] = s["time"] - t0
        end, end_settle = await settle(proxy, 120, log)
        peak = rss_kb(proxy.pid, "VmHWM")
        log(f"soak: settled {summary(end)}", flush=True)

        t1 = time.monotonic()
        proxy.popen.send_signal(signal.SIGTERM)
        try:
            code: int | None = await asyncio.to_thread(proxy.popen.wait, 60)
        except subprocess.TimeoutExpired:
            proxy.popen.kill()
            proxy.popen.wait(5)
            code = None
        shutdown_s = time.monotonic() - t1
        await asyncio.to_thread(proxy.thread.join, 10)
    finally:
        if proxy is not None and proxy.popen.poll() is None:
            proxy.popen.kill()
        upstreams.terminate()
        try:
            upstreams.wait(15)
        except subprocess.TimeoutExpired:
            upstreams.kill()
        up_log.close()
    fault_ports = {ports["reset"], ports["garbage"], ports["silent"]}
    flows = count_flows(work, fault_ports)
    return Result(
        args, started, cmd, load.tally, load_seconds, warmup, samples, baseline, baseline_settle,
        end, end_settle, code, shutdown_s, flows, proxy.lines, peak, upstreams.returncode,
        rev,
    )  # fmt: skip


def revision() -> str:
    """The commit the proxy ran from, and whether proxy/ had uncommitted changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "proxy"], cwd=ROOT, capture_output=True,
            text=True,
        ).stdout.strip()  # fmt: skip
    except OSError:
        return "unknown revision"
    if not head:
        return "unknown revision"
    return f"commit {head}" + (" with uncommitted changes in proxy/" if dirty else "")


async def report_progress(
    load: Load, samples: list[dict[str, Any]], log: Callable[..., None]
) -> None:
    while True:
        await asyncio.sleep(60)
        t = load.tally
        last = summary(samples[-1]) if samples else ""
        log(
            f"soak: {t.exchanges} exchanges (ok {t.http_ok}, fault {t.http_fault}, "
            f"unexpected {t.unexpected}), tunnels {t.tunnels}; {last}",
            flush=True,
        )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n")[0])
    p.add_argument("--minutes", type=float, default=30.0, help="length of the load (default 30)")
    p.add_argument("--report", metavar="FILE", help="also write the report (Markdown) here")
    p.add_argument("--rate", type=float, default=200.0,
                   help="requests per second, all clients together (default 200)")  # fmt: skip
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--keep", action="store_true", help="keep the work dir (flow logs, certs)")
    p.add_argument("-v", "--verbose", action="store_true", help="progress once a minute")
    p.add_argument("--serve-upstreams", metavar="DIR", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve_upstreams:
        asyncio.run(serve_upstreams(Path(args.serve_upstreams)))
        return 0
    work = Path(tempfile.mkdtemp(prefix="tapproxy-soak-"))
    try:
        result = asyncio.run(run_soak(args, work))
        text, ok = render(result)
        print(text)
        if args.report:
            Path(args.report).write_text(text)
        return 0 if ok else 1
    finally:
        if args.keep:
            print(f"soak: work dir kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
