"""A ``--web`` proxy that nobody looks at only appends its flows; the API indexes them.

A real tapproxy with ``--web --web-store FILE`` and a flow log, curl through
it, and the store's files read from outside: while no browser and no API
client asked, finished flows are in the spool beside the store and none is
in SQLite; the first API request indexes them all, in order, before it
answers (proxy/web/storewait.py, issue 18).
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx

from proxy.web.storewait import HEADER
from tests.support.proxyproc import start_proxy
from tests.support.upstreams import Upstreams

TOKEN = "waiting-token-5678"


def counts(path: Path) -> tuple[int, int]:
    """Flows in SQLite, and bytes of the spool past its headers, read from outside."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        (indexed,) = db.execute("SELECT count(*) FROM flows").fetchone()
    spool = [p.stat().st_size - len(HEADER) for p in path.parent.glob(path.name + ".waiting-*")]
    return indexed, sum(spool)


def test_flows_wait_unindexed_until_the_api_asks(upstreams: Upstreams, tmp_path: Path) -> None:
    store = tmp_path / "flows.sqlite"
    p = start_proxy(
        "--web", "--web-port", "0", "--web-token", TOKEN, "--web-store", str(store),
        flow_log=tmp_path / "flows.jsonl", modes=2,
    )  # fmt: skip
    try:
        urls = [f"{upstreams.url}/echo/wait/{i}" for i in range(12)]
        for url in urls:
            out = subprocess.run(["curl", "-sS", "--max-time", "20", "-x", p.url, url],
                                 capture_output=True, timeout=30)  # fmt: skip
            assert out.returncode == 0, out.stderr
        assert len(p.records(expect=12)) == 12  # the flow log has them: so does the store
        indexed, spooled = counts(store)
        assert indexed == 0 and spooled > 12 * 500  # twelve flows' JSON lines, at least
        host, port = p.addresses[1]
        with httpx.Client(base_url=f"http://{host}:{port}", trust_env=False, timeout=10,
                          headers={"Authorization": f"Bearer {TOKEN}"}) as c:  # fmt: skip
            page = c.get("/api/flows", params={"order": "asc"}).json()
            assert page["total"] == 12 and page["stored"] == 12
            assert [f["path"] for f in page["flows"]] == [f"/echo/wait/{i}" for i in range(12)]
            first = c.get(f"/api/flows/{page['flows'][0]['id']}").json()
            assert first["record"]["response"]["status"] == 200
        assert counts(store) == (12, 0)
    finally:
        assert p.stop() == 0


def test_a_store_or_spool_it_cannot_read_is_refused_with_a_message(tmp_path: Path) -> None:
    store = tmp_path / "flows.sqlite"
    with sqlite3.connect(store) as db:
        db.execute("PRAGMA user_version = 99")
        db.execute("CREATE TABLE t (x)")
    args = ["--web", "--web-port", "0", "--web-token", TOKEN, "--web-store", str(store)]
    cmd = [sys.executable, "-m", "proxy", "-p", "0", *args]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and "schema 99" in out.stderr, out.stderr
    store.unlink()
    (tmp_path / "flows.sqlite.waiting-1").write_bytes(b"tapproxy-waiting 9\n")
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and "waiting-1: not a spool segment" in out.stderr, out.stderr
