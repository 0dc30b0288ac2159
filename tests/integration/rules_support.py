"""Shared pieces of the live rule tests (tests/integration/test_rules_*.py and
tests/integration/rules/test_rules_*.py, whose ``origin`` fixture is in
rules/conftest.py).

* ``Origin``: a recording upstream (aiohttp, on the ``Upstreams`` loop): every
  request it receives is kept (method, raw target, raw headers, body), and it
  answers from replies the test sets per path, or with built-in routes.
* ``rules_dir``: a copy of one or more rule files (examples verbatim, or the
  templates in ``rules_data/`` with ``@NAME@`` placeholders filled in) in a
  temporary folder, with the mock files they refer to, plus an optional
  ``zz-route.yaml`` that sends every request still unanswered to the origin.
  Example hosts such as ``api.svc`` do not resolve: the route rule is a
  ``map_remote`` loaded *after* the example, so the example's edits apply
  (edits add up) and its terminal actions win (the first terminal ends the
  chain); nothing ever leaves 127.0.0.1.
* ``curl`` and raw-socket helpers, and ``record_for`` to find a flow record.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from tests.support.proxyproc import ProxyProcess, running_proxy
from tests.support.upstreams import Upstreams, pattern_chunks

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "rules" / "examples"
DATA = Path(__file__).resolve().parent / "rules_data"

Record = dict[str, Any]


# -- the recording origin ---------------------------------------------------------------


@dataclass
class Seen:
    """One request as the origin received it."""

    method: str
    target: str  # the raw request target (path and query, as sent)
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]

    @property
    def names(self) -> set[str]:
        return {k.lower() for k, _ in self.headers}


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


class Origin:
    """An upstream that records what it receives and answers as told.

    Built-in answers when no reply is set for the path, by its last two
    segments: ``.../bytes/N`` and ``.../download/N`` (N pattern bytes with
    Content-Length), ``.../chunked/N`` (chunked), ``.../status/N`` (that
    status, a short text body); anything else: the request echoed as JSON.
    """

    def __init__(self, upstreams: Upstreams, ssl_cert: str | None = None) -> None:
        self.upstreams = upstreams
        self.seen: list[Seen] = []
        self.replies: dict[str, Reply] = {}
        self._lock = threading.Lock()
        self.runner: web.AppRunner | None = None
        self.port = 0
        self.ssl_cert = ssl_cert
        upstreams.call(self._start())

    async def _start(self) -> None:
        import ssl

        app = web.Application(client_max_size=2**30)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # auto_decompress off: the test sees request bodies as they came (gzip stays gzip).
        self.runner = web.AppRunner(app, access_log=None, auto_decompress=False)
        await self.runner.setup()
        ctx = None
        if self.ssl_cert is not None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(self.ssl_cert)
        site = web.TCPSite(self.runner, "127.0.0.1", 0, ssl_context=ctx)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def close(self) -> None:
        if self.runner is not None:
            self.upstreams.call(self.runner.cleanup())

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def reply(self, path: str, status: int = 200, body: bytes | str | Any = b"", **kw: Any) -> None:
        """Answer requests for ``path`` (no query) with this; ``headers=`` for fields.

        ``body`` may be bytes, text, or a JSON value (sent as application/json).
        """
        headers = dict(kw.pop("headers", {}))
        if not isinstance(body, bytes | str):
            body = json.dumps(body, separators=(",", ":"))
            headers.setdefault("Content-Type", "application/json")
        if isinstance(body, str):
            body = body.encode()
        assert not kw, kw
        self.replies[path] = Reply(status, headers, body)

    def reset(self) -> None:
        with self._lock:
            self.seen.clear()
        self.replies.clear()

    def requests(self) -> list[Seen]:
        with self._lock:
            return list(self.seen)

    def only(self) -> Seen:
        seen = self.requests()
        assert len(seen) == 1, [s.target for s in seen]
        return seen[0]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        seen = Seen(
            request.method,
            request.raw_path,
            [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.raw_headers],
            body,
        )
        with self._lock:
            self.seen.append(seen)
        reply = self.replies.get(request.path)
        if reply is not None:
            return web.Response(status=reply.status, headers=reply.headers, body=reply.body)
        parts = request.path.strip("/").split("/")[-2:]
        if len(parts) == 2 and parts[1].isdigit():
            n = int(parts[1])
            if parts[0] in ("bytes", "download", "chunked"):
                resp = web.StreamResponse()
                if parts[0] == "chunked":
                    resp.enable_chunked_encoding()
                else:
                    resp.content_length = n
                resp.content_type = "application/octet-stream"
                await resp.prepare(request)
                for c in pattern_chunks(n, 16384):
                    await resp.write(c)
                await resp.write_eof()
                return resp
            if parts[0] == "status":
                return web.Response(status=n, text=f"status {n}\n")
        return web.json_response(
            {
                "method": seen.method,
                "target": seen.target,
                "headers": seen.headers,
                "body": body.decode("latin-1"),
            }
        )


# -- rule files ---------------------------------------------------------------------------

ROUTE = """\
# Test plumbing, loaded after the rules under test: every request no earlier
# rule answered goes to the local test origin (path and query kept).
version: 1
rules:
  - name: route-to-origin
    map_remote: {to: "http://127.0.0.1:@ORIGIN@", keep_host: @KEEP_HOST@}
"""


def fill(text: str, values: dict[str, object]) -> str:
    for k, v in values.items():
        text = text.replace(f"@{k}@", str(v))
    left = re.findall(r"@[A-Z_]+@", text)
    assert not left, f"placeholders not filled: {left}"
    return text


def rules_dir(
    tmp: Path,
    *files: str,
    origin: Origin | int | None = None,
    keep_host: bool = False,
    values: dict[str, object] | None = None,
) -> Path:
    """A folder with the given rule files (and mocks/site they use) and the route.

    ``files``: ``"examples/NAME.yaml"`` (copied verbatim) or ``"data/NAME.yaml"``
    (a template from rules_data/, ``@KEY@`` filled from ``values``). The folder
    loads in name order: the files are prefixed ``10-``, ``11-``... and the
    route is ``zz-route.yaml``.
    """
    d = tmp / "rules"
    d.mkdir(parents=True, exist_ok=True)
    for sub in ("mocks", "site"):
        if not (d / sub).exists():
            shutil.copytree(EXAMPLES / sub, d / sub)
    for i, name in enumerate(files):
        kind, _, base = name.partition("/")
        src = (EXAMPLES if kind == "examples" else DATA) / base
        text = src.read_text()
        if kind == "data":
            text = fill(text, values or {})
        (d / f"{10 + i}-{base}").write_text(text)
    if origin is not None:
        port = origin if isinstance(origin, int) else origin.port
        route = fill(ROUTE, {"ORIGIN": port, "KEEP_HOST": str(keep_host).lower()})
        (d / "zz-route.yaml").write_text(route)
    return d


# -- clients ------------------------------------------------------------------------------


@dataclass
class CurlResult:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    returncode: int
    stderr: str
    seconds: float

    def header(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def json(self) -> Any:
        return json.loads(self.body)


def curl(proxy: ProxyProcess, url: str, *args: str, timeout: float = 30.0) -> CurlResult:
    """One request with curl through ``proxy``; the final response's head and body."""
    cmd = [
        "curl", "-sS", "--max-time", str(timeout), "-x", proxy.url,
        "-D", "/dev/stderr", "-o", "-", *args, url,
    ]  # fmt: skip
    t0 = time.monotonic()
    r = subprocess.run(cmd, capture_output=True, timeout=timeout + 10)
    seconds = time.monotonic() - t0
    err = r.stderr.decode("latin-1")
    # -D /dev/stderr: every response head (1xx too), then curl's own messages.
    blocks = [b for b in err.split("\r\n\r\n") if b.startswith("HTTP/")]
    status, headers = 0, []
    if blocks:
        lines = blocks[-1].split("\r\n")
        status = int(lines[0].split()[1])
        headers = [(k.strip(), v.strip()) for k, _, v in (ln.partition(":") for ln in lines[1:])]
    rest = err.rsplit("\r\n\r\n", 1)[-1] if blocks else err
    return CurlResult(status, headers, r.stdout, r.returncode, rest, seconds)


def send(port: int, data: bytes, timeout: float = 5.0) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.settimeout(timeout)
    s.sendall(data)
    return s


def read_all(s: socket.socket, limit: int = 1 << 24) -> tuple[bytes, str]:
    """Everything until the peer closes: (bytes, how: "fin", "reset" or "timeout")."""
    out = bytearray()
    while len(out) < limit:
        try:
            data = s.recv(65536)
        except ConnectionResetError:
            return bytes(out), "reset"
        except TimeoutError:
            return bytes(out), "timeout"
        if not data:
            return bytes(out), "fin"
        out += data
    return bytes(out), "limit"


def split_response(data: bytes) -> tuple[int, dict[str, str], bytes]:
    """Status, fields (lower-case names, last wins) and the rest, of a raw response."""
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 "), head[:60]
    lines = head.decode("latin-1").split("\r\n")
    fields = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        fields[k.strip().lower()] = v.strip()
    return int(lines[0].split()[1]), fields, body


# -- flow records -------------------------------------------------------------------------


def record_for(
    proxy: ProxyProcess,
    pred: Callable[[Record], bool] | str,
    timeout: float = 10.0,
) -> Record:
    """The last flow record matching ``pred`` (a predicate, or a substring of the URL).

    A record's ``request.url`` is the one the client asked for and
    ``request.forwarded.url`` (when rules changed it) the one it went to, so a
    substring is looked for in both, and in "client Host + path and query".
    """
    if isinstance(pred, str):
        needle = pred

        def pred(r: Record) -> bool:
            req = r.get("request") or {}
            urls = [req.get("url", ""), (req.get("forwarded") or {}).get("url", "")]
            hosts = [v for k, v in req.get("headers", []) if k.lower() == "host"]
            paths = ["/" + url.split("://", 1)[-1].partition("/")[2] for url in urls if url]
            return any(needle in url for url in urls) or any(
                needle in h + path for h in hosts for path in paths
            )

    deadline = time.monotonic() + timeout
    while True:
        recs = proxy.records(0, timeout=0)
        found = [r for r in recs if pred(r)]
        if found:
            return found[-1]
        if time.monotonic() > deadline:
            raise AssertionError(f"no matching flow record in {len(recs)} records")
        time.sleep(0.05)


def matched(rec: Record) -> dict[str, list[str]]:
    """{rule name: actions} from a flow record (actions of repeated entries joined)."""
    out: dict[str, list[str]] = {}
    for m in (rec.get("rules") or {}).get("matched", []):
        out.setdefault(m["rule"], []).extend(m["actions"])
    return out


@contextlib.contextmanager
def rules_proxy(
    tmp: Path,
    *files: str,
    origin: Origin | int | None = None,
    args: tuple[str, ...] = (),
    keep_host: bool = False,
    values: dict[str, object] | None = None,
    modes: int = 1,
) -> Iterator[ProxyProcess]:
    """A proxy running ``--rules`` on a ``rules_dir`` of ``files``, with a flow log."""
    d = rules_dir(tmp, *files, origin=origin, keep_host=keep_host, values=values)
    with running_proxy("--rules", str(d), *args, flow_log=tmp / "flows.jsonl", modes=modes) as p:
        yield p
