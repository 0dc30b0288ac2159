"""Real HTTP/2 clients (curl, nghttp) pointed at the proxy, and their records.

A ``Route`` says how a client reaches the HTTP/1.1 upstream through the
proxy over HTTP/2: prior-knowledge h2c to a reverse listener, to a forward
listener (the upstream named in ``:authority``, curl's ``--connect-to``),
inside a CONNECT tunnel of an intercepting listener, or h2 in TLS (ALPN)
through ``--mitm``. Every request carries a unique query (``?t=...``) so
that its flow record is found among the others.
"""

from __future__ import annotations

import itertools
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.proxyproc import ProxyProcess

_tags = itertools.count()
TIMEOUT = 60


def tag() -> str:
    return f"t={time.monotonic_ns()}-{next(_tags)}"


@dataclass(frozen=True)
class Route:
    name: str
    proxy: ProxyProcess
    origin: str  # scheme://host:port the request names
    curl_args: tuple[str, ...]
    nghttp_base: str | None = None  # where nghttp connects, when it can take this route
    nghttp_args: tuple[str, ...] = ()

    def url(self, path: str) -> str:
        return self.origin + path

    def curl(self, path: str, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
        """curl over HTTP/2; stdout is ``%{http_version} %{http_code}``, the body in ``out``."""
        return subprocess.run(
            ["curl", "-sS", *self.curl_args, "-o", str(out),
             "-w", "%{http_version} %{http_code}", *extra, self.url(path)],
            capture_output=True, text=True, timeout=TIMEOUT,
        )  # fmt: skip

    def nghttp(self, path: str, *extra: str) -> subprocess.CompletedProcess[bytes]:
        assert self.nghttp_base is not None
        return subprocess.run(
            ["nghttp", *self.nghttp_args, *extra, self.nghttp_base + path],
            capture_output=True, timeout=TIMEOUT,
        )  # fmt: skip


def records_for(p: ProxyProcess, marker: str, n: int = 1, timeout: float = 15.0) -> list[Any]:
    """The ``n`` flow records whose URL carries ``marker`` (bounded wait)."""
    deadline = time.monotonic() + timeout
    while True:
        found = [r for r in p.records() if marker in str((r.get("request") or {}).get("url"))]
        if len(found) >= n or time.monotonic() > deadline:
            assert len(found) == n, (marker, n, [r.get("error") for r in found])
            return found
        time.sleep(0.05)


def assert_h2_record(rec: dict[str, Any], status: int = 200) -> None:
    """The record shows HTTP/2 on the client side, both ways."""
    assert rec["error"] is None, rec["error"]
    assert rec["request"]["http_version"] == "HTTP/2.0", rec["request"]
    assert rec["response"]["http_version"] == "HTTP/2.0", rec["response"]
    assert rec["response"]["status"] == status, rec["response"]


def write_pattern(path: Path, chunks: Any) -> Path:
    with path.open("wb") as f:
        for c in chunks:
            f.write(c)
    return path
