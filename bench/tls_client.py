"""The client of scenario d (``bench/tls_bench.py``), in its own pinned process.

``python -m bench.tls_bench _client '<json config>'`` runs ``client_main``:
W worker processes x T threads of blocking ``ssl`` sockets (the handshakes
run in OpenSSL outside the GIL). Every connection is fresh: ``CONNECT
127.0.0.1:PORT`` to the proxy (none when ``proxy_port`` is 0: straight to
the origin), a TLS handshake with the SNI of the mode (``h0.bench.test``
every time, or a new ``h<N>.bench.test``), one ``GET /small``, close.
Connections completed during the warm-up are not counted; the totals are
printed as one ``BENCHJSON {...}`` line.
"""

from __future__ import annotations

import json
import multiprocessing
import socket
import ssl
import threading
import time


def _recv_head(sock: socket.socket | ssl.SSLSocket) -> tuple[bytes, bytes]:
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(16384)
        if not chunk:
            raise ConnectionError("closed before the end of the head")
        buf += chunk
        if len(buf) > 65536:
            raise ConnectionError("head too long")
    head, _, rest = buf.partition(b"\r\n\r\n")
    return head, rest


def one_connection(cfg: dict, ctx: ssl.SSLContext, sni: str) -> None:
    port = cfg["proxy_port"] or cfg["origin_port"]
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if cfg["proxy_port"]:
            authority = f"127.0.0.1:{cfg['origin_port']}"
            sock.sendall(f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode())
            head, rest = _recv_head(sock)
            if not head.split(b" ", 2)[1:2] == [b"200"] or rest:
                raise ConnectionError(f"CONNECT: {head[:60]!r}")
        tls = ctx.wrap_socket(sock, server_hostname=sni)
        sock = tls
        tls.sendall(
            f"GET /small HTTP/1.1\r\nHost: {sni}\r\nUser-Agent: tapproxy-bench\r\n\r\n".encode()
        )
        head, body = _recv_head(tls)
        if not head.startswith(b"HTTP/1.1 200"):
            raise ConnectionError(f"GET: {head[:60]!r}")
        length = next(
            int(v)
            for k, _, v in (ln.partition(b":") for ln in head.split(b"\r\n"))
            if k.strip().lower() == b"content-length"
        )
        while len(body) < length:
            chunk = tls.recv(16384)
            if not chunk:
                raise ConnectionError("closed mid-body")
            body += chunk
    finally:
        sock.close()


def _worker(wid: int, cfg: dict, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    ctx = ssl.create_default_context(cafile=cfg["client_ca"])
    ctx.set_alpn_protocols(["http/1.1"])
    if cfg["no_hostname_check"]:
        ctx.check_hostname = False
    counts = {"done": 0, "counted": 0, "errors": 0}
    first_error: list[str] = []
    lock = threading.Lock()

    def loop(tid: int) -> None:
        base = (wid * cfg["threads"] + tid) * 10_000_000
        for i in range(cfg["max_per_thread"]):
            now = time.monotonic()
            if now >= cfg["t_end"]:
                return
            sni = "h0.bench.test" if cfg["mode"] == "same" else f"h{base + i}.bench.test"
            try:
                one_connection(cfg, ctx, sni)
            except (OSError, ValueError, StopIteration) as e:
                with lock:
                    counts["errors"] += 1
                    if not first_error:
                        first_error.append(f"{type(e).__name__}: {e}"[:200])
                time.sleep(0.01)
                continue
            t = time.monotonic()
            with lock:
                counts["done"] += 1
                if cfg["t_start"] <= t <= cfg["t_end"]:
                    counts["counted"] += 1

    threads = [threading.Thread(target=loop, args=(t,)) for t in range(cfg["threads"])]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.put({**counts, "first_error": first_error[0] if first_error else ""})


def client_main(cfg: dict) -> int:
    now = time.monotonic()
    cfg["t_start"] = now + cfg["warmup"]
    cfg["t_end"] = cfg["t_start"] + cfg["duration"]
    q: multiprocessing.Queue = multiprocessing.Queue()  # type: ignore[type-arg]
    procs = [
        multiprocessing.Process(target=_worker, args=(w, cfg, q)) for w in range(cfg["workers"])
    ]
    for p in procs:
        p.start()
    results = [q.get(timeout=cfg["warmup"] + cfg["duration"] + 60) for _ in procs]
    for p in procs:
        p.join(10)
    total = {k: sum(r[k] for r in results) for k in ("done", "counted", "errors")}
    total["first_error"] = next((r["first_error"] for r in results if r["first_error"]), "")
    total["conn_per_s"] = total["counted"] / cfg["duration"]
    print("BENCHJSON " + json.dumps(total), flush=True)
    return 0
