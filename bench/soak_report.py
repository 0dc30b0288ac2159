"""The soak's report: the checks, and the Markdown that shows them.

``Result`` is everything a run measured; ``render`` makes the report (the
checks with their targets, the client errors, exchanges by client, the flow
log against the clients, the proxy over time) and says whether every check
passed.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from typing import Any

from bench.soak_flows import FlowCount
from bench.soak_load import UPSTREAM_IDLE_TIMEOUT
from bench.soak_tally import KNOWN_BUGS, Tally
from bench.soak_wire import MiB


@dataclass
class Result:
    args: argparse.Namespace
    started: str
    cmd: list[str]
    tally: Tally
    load_seconds: float
    warmup_seconds: float
    samples: list[dict[str, Any]]
    baseline: dict[str, Any]
    baseline_settle_s: float
    end: dict[str, Any]
    end_settle_s: float
    exit_code: int | None
    shutdown_s: float
    flows: FlowCount
    proxy_lines: list[str]
    peak_rss_kb: int
    upstream_exit: int | None
    revision: str


def pct(a: float, b: float) -> str:
    return f"{(a - b) / b * 100:+.1f}%" if b else "n/a"


def _start_mid_end(samples: list[dict[str, Any]], key: str) -> tuple[int, int, int]:
    mid_t = (samples[0]["t"] + samples[-1]["t"]) / 2
    mid = min(samples, key=lambda x: abs(x["t"] - mid_t))[key]
    return samples[0][key], mid, samples[-1][key]


def render(r: Result) -> tuple[str, bool]:
    t, f = r.tally, r.flows
    warm = [s for s in r.samples if s.get("t", 0) >= r.warmup_seconds and "rss_kb" in s]
    ok = True
    lines: list[str] = []
    add = lines.append
    add(f"Soak run of {r.started}: `python -m bench.soak --minutes {r.args.minutes:g}"
        + (f" --rate {r.args.rate:g}" if r.args.rate != 200 else "") + "`")  # fmt: skip
    add("")
    add(f"Proxy: {r.revision}.")
    add("")
    add(f"Machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}; load "
        f"{r.load_seconds:.0f} s at most {r.args.rate:g} requests/s, nothing pinned.")  # fmt: skip
    add("")
    add("| check | target | result | |")
    add("| --- | --- | --- | --- |")
    bugs = {marker: t.known_bug(marker) for marker in KNOWN_BUGS}
    mark = "ok" if t.unexpected == 0 else "**FAIL**"
    ok &= t.unexpected == 0
    known = sum(bugs.values())
    note = f" ({known} from the proxy bugs below, {t.unexpected - known} other)" if known else ""
    add(f"| client errors that were not injected faults | 0 | {t.unexpected}{note} | {mark} |")
    held = [x for x in warm if "rss_held_kb" in x]
    if held:
        start, mid, end = _start_mid_end(held, "rss_held_kb")
        growth = max(abs(mid - start), abs(end - start)) / start
        mark = "ok" if growth <= 0.10 else "**FAIL**"
        ok &= growth <= 0.10
        add(f"| RSS held start / middle / end (after warm-up; read right after the proxy's "
            f"gc.collect and malloc_trim) | flat within 10% | "
            f"{start / 1024:.1f} / {mid / 1024:.1f} / {end / 1024:.1f} MiB "
            f"({pct(mid, start)}, {pct(end, start)}) | {mark} |")  # fmt: skip
    if warm:
        start, mid, end = _start_mid_end(warm, "rss_kb")
        add(f"| raw RSS start / middle / end (sampled before that; includes free heap "
            f"pages glibc keeps) | (see docs/reliability.md) | "
            f"{start / 1024:.1f} / {mid / 1024:.1f} / {end / 1024:.1f} MiB "
            f"({pct(mid, start)}, {pct(end, start)}) | |")  # fmt: skip
    base_fds, end_fds = r.baseline.get("fds"), r.end.get("fds")
    mark = "ok" if base_fds == end_fds else "**FAIL**"
    ok &= base_fds == end_fds
    add(
        f"| file descriptors after the load, settled | baseline ({base_fds}) | {end_fds} | {mark} |"
    )
    expected = t.http_ok + t.http_fault
    got = f.http_ok + f.http_fault
    same = (f.http_ok, f.http_fault) == (t.http_ok, t.http_fault)
    # A successfully intercepted CONNECT leaves no record of its own today (only
    # its requests do); accept that, or one record per tunnel, but nothing else.
    tunnels_ok = f.tunnels in (0, t.tunnels) and f.tunnels_error == 0
    # Slow heads the proxy closed: recorded since 82ad8ad, not before.
    heads_ok = f.head_timeouts in (0, t.closed_heads)
    clean = f.http_error_other == 0 and not f.other
    mark = "ok" if same and tunnels_ok and heads_ok and clean else "**FAIL**"
    ok &= mark == "ok"
    add(f"| flow-log `http` records vs HTTP exchanges completed by clients | equal | "
        f"{got} records / {expected} exchanges | {mark} |")  # fmt: skip
    dropped = r.end.get("stats", {}).get("flows_dropped")
    mark = "ok" if dropped == 0 else "**FAIL**"
    ok &= dropped == 0
    add(f"| flow records dropped (SIGUSR1 `flows_dropped`) | 0 | {dropped} | {mark} |")
    mark = "ok" if r.exit_code == 0 else "**FAIL**"
    ok &= r.exit_code == 0
    add(f"| proxy exit code after SIGTERM | 0 | {r.exit_code} (in {r.shutdown_s:.1f} s) "
        f"| {mark} |")  # fmt: skip
    rps = t.exchanges / r.load_seconds if r.load_seconds else 0
    add(f"| requests per second overall | (capped at {r.args.rate:g}) | {rps:.1f} "
        f"({t.exchanges} HTTP exchanges, {t.tunnels} CONNECT tunnels) | |")  # fmt: skip
    add("")

    add("### Client errors that were not injected faults")
    add("")
    if not t.errors:
        add("None.")
    else:
        add("| count | first seen (normalized: runs of 3+ digits are one key) |")
        add("| --- | --- |")
        for count, example in sorted(t.errors.values(), key=lambda x: -x[0]):
            add(f"| {count} | `{str(example).replace('|', '/')[:300]}` |")
        add("")
        add(f"Of which: {t.unexpected_complete} after a complete, correct response (the "
            f"exchange has its record), {t.unexpected_other} not about a request (slow "
            "heads, closing TLS).")  # fmt: skip
        for marker, what in KNOWN_BUGS.items():
            if bugs[marker]:
                add(f"Known proxy bug, {bugs[marker]} errors: {what}.")
    add("")

    add("### Exchanges by client")
    add("")
    outcomes = ["ok", "fault", "tunnel", "closed (head timeout)", "unexpected"]
    add("| client | " + " | ".join(outcomes) + " |")
    add("| --- |" + " --- |" * len(outcomes))
    for name in sorted(t.by_worker):
        c = t.by_worker[name]
        add(f"| {name} | " + " | ".join(str(c.get(o, 0)) for o in outcomes) + " |")
    add("")
    add(f"Large bodies verified by size and SHA-256: {t.bytes_checked / MiB / 1024:.1f} GiB.")
    add("")

    add("### Flow log vs clients")
    add("")
    add("Counted after the proxy exited (SIGTERM flushes every queued record), over "
        f"{f.files} file(s) (`--flow-log-max-size 64M`, rotated).")  # fmt: skip
    add("")
    add("| what | clients | flow log |")
    add("| --- | --- | --- |")
    add(f"| complete expected exchanges (`http`, `error` null) | {t.http_ok} | {f.http_ok} |")
    add(f"| injected faults (`http` to a faulty upstream, `error` set) | {t.http_fault} | "
        f"{f.http_fault} |")  # fmt: skip
    add(f"| intercepted CONNECT tunnels (`tunnel` records) | {t.tunnels} | {f.tunnels} "
        f"({f.tunnels_error} with an error; a successful interception has no record of its "
        "own, only its requests) |")  # fmt: skip
    add(f"| slow-header connections closed by the proxy (`http`, `error` `client: timeout "
        f"(client_head) ...`) | {t.closed_heads} | {f.head_timeouts} |")  # fmt: skip
    add(f"| other `http` records with an error | - | {f.http_error_other} |")
    add(f"| records of other kinds | - | {dict(f.other) or 0} |")
    add(f"| unreadable lines | - | {f.unreadable} |")
    add(f"| SIGUSR1 `flows_submitted` at the end / records in the log | "
        f"{r.end.get('stats', {}).get('flows_submitted')} | {f.records} |")  # fmt: skip
    add("")
    if f.errors:
        add("Errors in records that are not injected faults:")
        add("")
        for text, n in f.errors.most_common(20):
            add(f"* {n} x `{text[:300]}`")
        add("")

    add("### Proxy over time")
    add("")
    add(f"Warm-up: the first {r.warmup_seconds:.0f} s of load. Baseline: after a 3 s burst of "
        "every kind of traffic, once client connections and pooled upstreams were gone "
        f"(settled in {r.baseline_settle_s:.0f} s); the end figure the same way after the load "
        f"(settled in {r.end_settle_s:.0f} s; `--upstream-idle-timeout "
        f"{UPSTREAM_IDLE_TIMEOUT:g}`).")  # fmt: skip
    add("")
    add("| t (s) | RSS MiB | fds | connections | pooled | tasks | flows | CPU s |")
    add("| --- | --- | --- | --- | --- | --- | --- | --- |")

    def row(label: str, s: dict[str, Any]) -> None:
        st = s.get("stats", {})
        add(f"| {label} | {s.get('rss_kb', 0) / 1024:.1f} | {s.get('fds')} | "
            f"{st.get('connections')} | {st.get('pooled_upstreams')} | {st.get('tasks')} | "
            f"{st.get('flows_submitted')} | {s.get('cpu_s', 0):.0f} |")  # fmt: skip

    row("baseline", r.baseline)
    step = max(1, len(r.samples) // 20)
    shown = r.samples[::step]
    if r.samples and shown[-1] is not r.samples[-1]:
        shown.append(r.samples[-1])
    for s in shown:
        row(f"{s.get('t', 0):.0f}", s)
    row("settled", r.end)
    add("")
    add(f"Peak RSS (VmHWM): {r.peak_rss_kb / 1024:.1f} MiB.")
    add("")
    interesting = [x for x in r.proxy_lines if "listening at" not in x]
    if interesting:
        add("Proxy stderr (besides stats):")
        add("")
        add("```")
        add("\n".join(interesting[-20:]))
        add("```")
        add("")
    add(
        "How exchanges are counted: a client counts an exchange `ok` when it has read the "
        "complete response it expected (status, size, SHA-256 or body check; rule answers "
        "such as the 403 of `/blocked` included), and `fault` when it talked to a faulty "
        "upstream and got what that fault must produce: the proxy's 502 (reset before the "
        "response, non-HTTP bytes), its 504 after `--response-head-timeout` (silent "
        "upstream: the timeout is the injected fault), or a cut connection when the fault "
        "hit after the response head (RST or broken chunked body mid-body). Each of these is "
        "one `http` record, with `error` null for `ok` and set for `fault`. A request made "
        "inside an intercepted HTTPS tunnel is an exchange like any other; the CONNECT "
        "itself is counted apart. A slow-header connection never completes a request head: "
        "it counts as expected when the proxy closes it within `--client-head-timeout` plus "
        "2.5 s of watchdog slack, and has one `http` record whose `error` is `client: timeout "
        "(client_head) ...` (proxies before commit 82ad8ad wrote none). An exchange whose response "
        "was complete and right but whose connection then misbehaved (not closed after "
        "`Connection: close`) is an unexpected error *and* has its record. Anything else is "
        "an unexpected error (its exchange may or may not have a record)."
    )
    return "\n".join(lines) + "\n", ok
