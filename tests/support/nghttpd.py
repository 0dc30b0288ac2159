"""Debian's ``nghttpd`` (nghttp2-server) as a real HTTP/2 origin for live tests.

nghttpd speaks HTTP/2 only: h2c with prior knowledge (``--no-tls``) or h2 in
TLS (ALPN); a plain HTTP/1.1 request gets no HTTP answer at all. It serves
files from a document root and, with ``--echo-upload``, answers a POST or
PUT with the body it received. With ``-v`` it logs every frame it receives
and the request fields it decoded from HEADERS frames
(``recv (stream_id=N) :path: /x``): the proof that a request reached it
over HTTP/2. nghttpd takes a port number and cannot report one the OS
picked, so we find a free one and retry if another process took it first;
it is ready when ``ss`` shows its own listening socket.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

NGHTTPD = shutil.which("nghttpd")
START_TIMEOUT = 10.0


@dataclass
class Nghttpd:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path
    docroot: Path

    def log_text(self) -> str:
        return self.log.read_text("utf-8", "replace")

    def wait_log(self, needle: str, timeout: float = 10.0) -> str:
        """The log once ``needle`` is in it (bounded wait: nghttpd writes as it goes)."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.log_text()
            if needle in text or time.monotonic() > deadline:
                assert needle in text, f"{needle!r} not in nghttpd's log:\n{text[-3000:]}"
                return text
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _listens(pid: int, port: int) -> bool:
    """Whether process ``pid`` has a listening socket on ``port`` (nghttpd prints
    nothing when not verbose, and a connection could reach another process)."""
    out = subprocess.run(
        ["ss", "-Hltnp", f"( sport = :{port} )"],
        capture_output=True, text=True, timeout=10, check=True,
    )  # fmt: skip
    return f"pid={pid}," in out.stdout


def _listening(n: Nghttpd, deadline: float) -> bool:
    """True once nghttpd listens; False if it exited (another process took the port)."""
    while time.monotonic() < deadline:
        if _listens(n.proc.pid, n.port):
            return True
        if n.proc.poll() is not None:
            return False
        time.sleep(0.05)
    n.stop()
    raise RuntimeError(f"nghttpd did not start: {n.log_text()}")


def start_nghttpd(
    workdir: Path,
    docroot: Path,
    *,
    cert: Path | None = None,
    verbose: bool = True,
    extra: tuple[str, ...] = (),
) -> Nghttpd:
    """nghttpd on 127.0.0.1 serving ``docroot`` with ``--echo-upload``: h2c, or h2 in
    TLS with ``cert`` (a PEM holding the chain and the key, as ``CertAuthority`` makes)."""
    assert NGHTTPD is not None, "nghttpd (nghttp2-server) missing"
    workdir.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + START_TIMEOUT
    attempts = 5
    for _ in range(attempts):
        port = _free_port()
        log = workdir / f"nghttpd-{port}.log"
        args = ["-a", "127.0.0.1", "-d", str(docroot), "--echo-upload", *extra]
        args += ["-v"] if verbose else []
        tail = [str(port), str(cert), str(cert)] if cert else ["--no-tls", str(port)]
        with log.open("wb") as out:
            proc = subprocess.Popen(
                ["stdbuf", "-oL", NGHTTPD, *args, *tail],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        n = Nghttpd(proc, port, log, docroot)
        if _listening(n, deadline):
            return n
    raise RuntimeError(f"nghttpd found no free port in {attempts} attempts")
