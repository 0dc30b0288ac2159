"""Starting and measuring processes for the benchmarks (loopback only)."""

from __future__ import annotations

import contextlib
import os
import re
import resource
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: The proxy under test runs on this CPU; load generators and upstreams on the other.
PROXY_CPU = 0
LOAD_CPU = 1
#: Open-file limit given to every process the benchmarks start (many idle connections).
NOFILE = 16384


@dataclass
class Proc:
    popen: subprocess.Popen[bytes]
    port: int

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)


def rss_kb(pid: int, field: str = "VmRSS") -> int:
    """Resident set (or VmHWM, the peak) of a process, in KiB, from /proc."""
    text = Path(f"/proc/{pid}/status").read_text()
    m = re.search(rf"^{field}:\s+(\d+) kB", text, re.M)
    return int(m.group(1)) if m else 0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def taskset(cpu: int | None) -> list[str]:
    return ["taskset", "-c", str(cpu)] if cpu is not None and _has_taskset() else []


def _has_taskset() -> bool:
    return subprocess.run(["which", "taskset"], capture_output=True).returncode == 0


def start_upstream(cpu: int | None = None) -> Proc:
    p = subprocess.Popen(
        [*taskset(cpu), sys.executable, str(ROOT / "bench" / "upstream.py"), "0"],
        stdout=subprocess.PIPE,
    )
    assert p.stdout is not None
    port = int(p.stdout.readline())
    return Proc(p, port)


def start_tapproxy(*args: str, cpu: int | None = None, timeout: float = 20.0) -> Proc:
    proxy = [sys.executable, "-m", "proxy", "-q", "-p", "0", "--loop", "asyncio"]
    cmd = [*taskset(cpu), *proxy, *args]
    p = subprocess.Popen(cmd, stderr=subprocess.PIPE, cwd=ROOT)
    assert p.stderr is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = p.stderr.readline()
        m = re.search(rb"listening at \S+:(\d+)", line)
        if m:
            return Proc(p, int(m.group(1)))
        if not line and p.poll() is not None:
            break
    p.kill()
    raise RuntimeError("tapproxy did not start")


def curl_download(url: str, proxy: str | None, cpu: int | None = None) -> tuple[int, float]:
    """Bytes and seconds for one download with curl (body discarded)."""
    cmd = [
        *taskset(cpu),
        "curl",
        "-sS",
        "-o",
        "/dev/null",
        "-w",
        "%{size_download} %{time_total}",
        url,
    ]
    if proxy:
        cmd[len(taskset(cpu)) + 1 : len(taskset(cpu)) + 1] = ["-x", proxy]
    out = subprocess.run(
        cmd, capture_output=True, text=True, check=True, timeout=600
    ).stdout.split()
    return int(out[0]), float(out[1])


def machine_line() -> str:
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return f"{os.cpu_count()} cores ({cpu}), Python {sys.version.split()[0]}"


# -- helpers shared by bench/run.py and bench/tls_bench.py ----------------------------


def raise_nofile() -> None:
    """Raise the soft open-file limit (used as Popen preexec_fn and in-process)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = NOFILE if hard == resource.RLIM_INFINITY else min(NOFILE, hard)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(
    port: int, timeout: float = 30.0, proc: subprocess.Popen[bytes] | None = None
) -> None:
    """Wait until something accepts connections on 127.0.0.1:port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"exited with status {proc.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listening on port {port} after {timeout:.0f} s")


def tree_pids(pid: int) -> list[int]:
    """``pid`` and all its live descendants (multi-process proxies such as proxy.py)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def tree_rss_kb(pid: int, field: str = "VmRSS") -> int:
    """Sum of ``rss_kb`` over the process tree (for VmHWM: the sum of each one's peak)."""
    total = 0
    for p in tree_pids(pid):
        with contextlib.suppress(OSError):
            total += rss_kb(p, field)
    return total


def tree_cpu_seconds(pid: int) -> float:
    total = 0.0
    for p in tree_pids(pid):
        with contextlib.suppress(OSError):
            total += cpu_seconds(p)
    return total


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "?"


def tool_version(cmd: list[str]) -> str:
    """First line a tool prints about its version, or why there is none."""
    if shutil.which(cmd[0]) is None and not Path(cmd[0]).exists():
        return "not installed"
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"unknown ({e})"
    text = (r.stdout + r.stderr).strip()
    return text.splitlines()[0] if text else "unknown"


@dataclass
class Launched:
    """A process a benchmark started, with the command recorded for the report."""

    popen: subprocess.Popen[bytes]
    cmd: list[str]
    port: int = 0
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self) -> None:
        Proc(self.popen, self.port).stop()


def launch(
    cmd: list[str],
    *,
    cpu: int | None = None,
    log: Path | None = None,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> Launched:
    """Start ``cmd`` pinned to ``cpu``, output to ``log`` (or discarded)."""
    full = [*taskset(cpu), *cmd]
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115
    try:
        p = subprocess.Popen(
            full,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd or ROOT,
            env=env,
            preexec_fn=raise_nofile,
        )
    finally:
        if log:
            out.close()  # type: ignore[union-attr]
    return Launched(p, full)


def _busy_seconds() -> float:
    """CPU time spent in processes on the whole machine (user+nice+system, no irq/idle)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()
    return (int(fields[1]) + int(fields[2]) + int(fields[3])) / os.sysconf("SC_CLK_TCK")


def _own_seconds(pids: tuple[int, ...]) -> float:
    t = os.times()
    own = t.user + t.system + t.children_user + t.children_system
    return own + sum(tree_cpu_seconds(p) for p in pids)


class OtherLoad:
    """CPU used by processes that are not the benchmark's, over a window.

    Other people's test runs on the same machine skew the figures; this says by
    how much. ``pids``: the long-running processes we started (proxy, origin);
    short-lived ones (wrk, curl, clients) are counted through ``os.times()``
    once reaped. Result: the average number of CPUs busy with other work.
    """

    def __init__(self, *pids: int) -> None:
        self.pids = pids
        self.t0 = time.monotonic()
        self.busy0 = _busy_seconds()
        self.own0 = _own_seconds(pids)

    def stop(self) -> float:
        wall = max(1e-3, time.monotonic() - self.t0)
        busy = _busy_seconds() - self.busy0
        own = _own_seconds(self.pids) - self.own0
        return max(0.0, (busy - own) / wall)


#: Seconds ``wait_quiet`` may still spend in this process, all calls together.
QUIET_BUDGET = [300.0]


def wait_quiet(pids: tuple[int, ...] = (), limit: float = 0.3, max_wait: float = 5.0) -> float:
    """Wait (at most ``max_wait`` s) until other processes use less than ``limit`` CPUs.

    All calls together wait at most ``QUIET_BUDGET`` seconds, so that a machine
    that stays busy does not stretch the run. Returns the last measured load.
    """
    start = time.monotonic()
    deadline = start + max(0.0, min(max_wait, QUIET_BUDGET[0]))
    load = 0.0
    while time.monotonic() < deadline:
        meter = OtherLoad(*pids)
        time.sleep(0.5)
        load = meter.stop()
        if load < limit:
            break
    QUIET_BUDGET[0] -= time.monotonic() - start
    return load
