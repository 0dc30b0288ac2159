"""Scenario c of ``python -m bench.run``: bulk downloads with curl.

One 1 GiB stream, then 8 parallel 256 MiB streams, through each peer: MB/s
(every body's size checked) and peak RSS (VmHWM of a proxy started fresh).
"""

from __future__ import annotations

import subprocess
import time

from bench.common import tree_rss_kb
from bench.harness import Bench, GiB, MiB, log
from bench.loadgen import curl_cmd_text, curl_fetch
from bench.peers import RELAY, Running
from bench.report import Column, Table


def _download(bench: Bench, run: Running, size: int, streams: int) -> tuple[float, float | None]:
    origin = bench.get_origin()
    url = origin.url(origin.big_path(size))
    bench.meter = bench.quiet(run)
    t0 = time.monotonic()
    procs = [curl_fetch(url, run.proxy_url, timeout=300) for _ in range(streams)]
    outs = [p.communicate(timeout=360) for p in procs]
    wall = time.monotonic() - t0
    bench.commands.setdefault(
        f"c curl {'direct' if run.proc is None else 'via proxy'} x{streams}",
        curl_cmd_text(url, run.proxy_url) + (f"   # x{streams} in parallel" if streams > 1 else ""),
    )
    for p, (out, err) in zip(procs, outs, strict=True):
        got = out.split()
        if p.returncode != 0 or len(got) < 2 or int(got[0]) != size or got[1] != "200":
            log(f"  download failed: got {out.strip()!r} of {size} bytes: {err.strip()}")
            reason = err.strip().split("\n")[0][:160] or f"HTTP {got[1:2]}, short body"
            raise RuntimeError(f"download failed (curl exit {p.returncode}: {reason})")
    peak = tree_rss_kb(run.proc.pid, "VmHWM") / 1024 if run.proc else None
    return size * streams / wall / 1e6, peak


def bulk(bench: Bench) -> Table:
    s = bench.s
    table = Table(
        f"c. bulk download: one {s.big / GiB:g} GiB stream, {s.par_streams} parallel "
        f"{s.par_size / MiB:g} MiB streams (curl), {s.runs} run(s)",
        [
            Column("one", "1 stream MB/s"),
            Column("one_x", "÷ bare relay", 2),
            Column("one_rss", "peak RSS MB", 1),
            Column("par", f"{s.par_streams} streams MB/s"),
            Column("par_x", "÷ bare relay", 2),
            Column("par_rss", "peak RSS MB", 1),
            Column("bg", "others' CPUs", 2),
        ],
        list(bench.peers),
    )
    table.footnotes.append(
        "MB = 10^6 bytes; every body's size is checked. Peak RSS: VmHWM from "
        "/proc/PID/status (summed over the proxy's processes), for a proxy started "
        "fresh for that transfer."
    )
    for i in range(s.runs):
        one: dict[str, float] = {}
        par: dict[str, float] = {}
        for key, size, streams, bucket in (
            ("one", s.big, 1, one),
            ("par", s.par_size, s.par_streams, par),
        ):
            for name in bench.peers:
                run = bench.start(name, "c", table)
                if run is None:
                    continue
                try:
                    mbps, peak = _download(bench, run, size, streams)
                    table.add(name, "bg", bench.meter.stop())
                    if not run.alive():
                        table.note(name, f"crashed: {run.exit_reason()}")
                        continue
                    bucket[name] = mbps
                    table.add(name, key, mbps)
                    table.add(name, f"{key}_rss", peak)
                    log(f"  c run {i + 1} {key} {name:10} {mbps:7.0f} MB/s peak {peak or 0:.1f} MB")
                except (RuntimeError, OSError, subprocess.SubprocessError) as e:
                    table.note(name, f"{key}: {e}")
                    log(f"  c {key} {name}: failed: {e}")
                finally:
                    run.stop()
        table.add_ratio("one_x", one, RELAY)
        table.add_ratio("par_x", par, RELAY)
    return table
