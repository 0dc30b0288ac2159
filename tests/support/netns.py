"""Two network namespaces joined by a veth pair, for live-capture tests.

Addresses are 10.200.N.1 (client) and 10.200.N.2 (server), on the veth
only: no route leaves the pair, and the namespaces are deleted by
``close()``. Every wait here is bounded.
"""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import time
from dataclasses import dataclass

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def missing_privilege() -> str | None:
    """Why namespace tests cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, packet sockets)"
    for tool in ("ip", "tcpdump", "curl", "ss"):
        if shutil.which(tool) is None:
            return f"needs {tool}"
    return None


def _run(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True, timeout=20)


@dataclass
class NetPair:
    client_ns: str
    server_ns: str
    client_if: str
    server_if: str
    client_ip: str
    server_ip: str

    @classmethod
    def create(cls) -> NetPair:
        n = os.getpid() % 200 + 20
        tag = f"{os.getpid() % 100000}"
        pair = cls(f"tpsn-c{tag}", f"tpsn-s{tag}", f"tpc{tag}", f"tps{tag}",
                   f"10.200.{n}.1", f"10.200.{n}.2")  # fmt: skip
        try:
            pair._setup()
        except BaseException:
            pair.close()
            raise
        return pair

    def _setup(self) -> None:
        _run("ip", "netns", "add", self.client_ns)
        _run("ip", "netns", "add", self.server_ns)
        _run("ip", "link", "add", self.client_if, "netns", self.client_ns, "type", "veth",
             "peer", "name", self.server_if, "netns", self.server_ns)  # fmt: skip
        for ns, ifname, ip in (
            (self.client_ns, self.client_if, self.client_ip),
            (self.server_ns, self.server_if, self.server_ip),
        ):
            _run("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", ifname)
            _run("ip", "-n", ns, "link", "set", ifname, "up")
            _run("ip", "-n", ns, "link", "set", "lo", "up")

    def exec(self, ns: str, *cmd: str) -> list[str]:
        return ["ip", "netns", "exec", ns, *cmd]

    def close(self) -> None:
        for ns in (self.client_ns, self.server_ns):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=20)


def wait_listening(pair: NetPair, ns: str, port: int, timeout: float = 15.0) -> None:
    """Until something listens on TCP ``port`` in ``ns`` (ss, polled, bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = subprocess.run(
            pair.exec(ns, "ss", "-Hltn", f"sport = :{port}"),
            capture_output=True, text=True, timeout=10,
        ).stdout  # fmt: skip
        if out.strip():
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port} in {ns}")


def wait_stderr_line(proc: subprocess.Popen[bytes], text: str, timeout: float = 20.0) -> str:
    """Read ``proc``'s stderr until a line containing ``text`` (bounded)."""
    assert proc.stderr is not None
    fd = proc.stderr.fileno()
    seen = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], max(deadline - time.monotonic(), 0))
        if not ready:
            break
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        seen += chunk
        if text.encode() in seen:
            return seen.decode(errors="replace")
    raise TimeoutError(f"no {text!r} on stderr; saw {seen!r} (exit {proc.poll()})")
