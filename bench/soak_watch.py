"""The proxy process of the soak, watched.

``Watched`` runs tapproxy and reads its stderr in a thread (the
``tapproxy-stats`` lines of SIGUSR1 apart); a snapshot is RSS, descriptors
and CPU from /proc plus the proxy's own counters, and RSS again right after
the stats line (held: the proxy runs gc.collect() and malloc_trim(0) before
printing it). ``sample_loop`` samples during the load; ``settle`` waits until
no client connection and no pooled upstream is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import ROOT

SAMPLE_EVERY = 10.0


class Watched:
    """tapproxy as a subprocess; a thread reads its stderr (stats lines apart)."""

    def __init__(self, cmd: list[str]) -> None:
        self.cmd = cmd
        self.popen = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            cwd=ROOT,
        )  # fmt: skip
        self.stats: queue.Queue[dict[str, int]] = queue.Queue()
        self.lines: list[str] = []
        self.port = 0
        listening = threading.Event()
        self._listening = listening
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()
        if not listening.wait(30) or not self.port:
            self.popen.kill()
            raise RuntimeError("tapproxy did not start:\n" + "\n".join(self.lines[-20:]))

    def _read(self) -> None:
        assert self.popen.stderr is not None
        for raw in self.popen.stderr:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            if line.startswith("tapproxy-stats "):
                self.stats.put(json.loads(line.split(" ", 1)[1]))
                continue
            self.lines.append(line)
            m = re.search(r"listening at \S+:(\d+)", line)
            if m and not self.port:
                self.port = int(m.group(1))
                self._listening.set()
        self._listening.set()

    @property
    def pid(self) -> int:
        return self.popen.pid

    def snapshot(self) -> dict[str, Any]:
        """RSS and fds from /proc, plus the proxy's own counters (SIGUSR1)."""
        with contextlib.suppress(queue.Empty):
            while True:
                self.stats.get_nowait()
        snap: dict[str, Any] = {"time": time.monotonic()}
        try:
            snap["rss_kb"] = rss_kb(self.pid)
            snap["fds"] = len(os.listdir(f"/proc/{self.pid}/fd"))
            snap["cpu_s"] = cpu_seconds(self.pid)
        except OSError:
            return snap
        os.kill(self.pid, signal.SIGUSR1)
        with contextlib.suppress(queue.Empty):
            snap["stats"] = self.stats.get(timeout=10)
            # The proxy ran gc.collect() and malloc_trim(0) before printing its
            # stats: what it holds now, without the free heap pages that glibc
            # had not given back (see render()).
            with contextlib.suppress(OSError):
                snap["rss_held_kb"] = rss_kb(self.pid)
        return snap


def rss_kb(pid: int, what: str = "VmRSS") -> int:
    m = re.search(rf"^{what}:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.M)
    return int(m.group(1)) if m else 0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def sample_loop(proxy: Watched, samples: list[dict[str, Any]], stop: asyncio.Event) -> None:
    while not stop.is_set():
        snap = await asyncio.to_thread(proxy.snapshot)
        snap["phase"] = "load"
        samples.append(snap)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), SAMPLE_EVERY)


async def settle(
    proxy: Watched, timeout: float, log: Callable[..., None]
) -> tuple[dict[str, Any], float]:
    """Wait (bounded) until no client connection and no pooled upstream is left."""
    t0 = time.monotonic()
    snap: dict[str, Any] = {}
    while time.monotonic() - t0 < timeout:
        snap = await asyncio.to_thread(proxy.snapshot)
        log(f"soak: settling, {time.monotonic() - t0:.0f} s: {summary(snap)}", flush=True)
        st = snap.get("stats", {})
        if st.get("connections") == 0 and st.get("pooled_upstreams") == 0:
            await asyncio.sleep(1.0)  # connection_lost callbacks, closes in flight
            snap = await asyncio.to_thread(proxy.snapshot)
            st = snap.get("stats", {})
            if st.get("connections") == 0 and st.get("pooled_upstreams") == 0:
                break
        await asyncio.sleep(1.0)
    return snap, time.monotonic() - t0


def summary(snap: dict[str, Any]) -> str:
    st = snap.get("stats", {})
    return (
        f"rss {snap.get('rss_kb', 0) / 1024:.1f} MiB "
        f"(held {snap.get('rss_held_kb', 0) / 1024:.1f}), fds {snap.get('fds')}, "
        f"connections {st.get('connections')}, pooled {st.get('pooled_upstreams')}, "
        f"tasks {st.get('tasks')}, flows {st.get('flows_submitted')}"
    )
