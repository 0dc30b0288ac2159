"""Starting and measuring processes for the benchmarks (loopback only)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Proc:
    popen: subprocess.Popen[bytes]
    port: int

    @property
    def pid(self) -> int:
        return self.popen.pid

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
    cmd = [*taskset(cpu), sys.executable, "-m", "proxy", "-q", "-p", "0", *args]
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
