"""Reverse and TCP modes, and several modes in one process."""

from __future__ import annotations

import socket
from pathlib import Path

import requests

from tests.support.proxyproc import running_proxy
from tests.support.rawhttp import connect, recv_until_close
from tests.support.upstreams import RawConnection, Upstreams


def test_reverse_mode_rewrites_host(upstreams: Upstreams) -> None:
    with running_proxy("--mode", f"reverse:{upstreams.url}") as p:
        r = requests.get(f"{p.url}/echo/a?b=1", headers={"Host": "public.example"}, timeout=10)
    assert r.status_code == 200
    body = r.json()
    assert body["path"] == "/echo/a?b=1"
    assert ["Host", f"127.0.0.1:{upstreams.port}"] in body["headers"]


def test_reverse_mode_keep_host_header(upstreams: Upstreams) -> None:
    with running_proxy("--mode", f"reverse:{upstreams.url}", "--keep-host-header") as p:
        r = requests.get(f"{p.url}/echo", headers={"Host": "public.example"}, timeout=10)
    assert ["Host", "public.example"] in r.json()["headers"]


def test_tcp_mode_relays_raw_bytes_and_records(upstreams: Upstreams, tmp_path: Path) -> None:
    async def echo_upper(conn: RawConnection) -> None:
        while data := await conn.read_some(5):
            conn.send(data.upper())
            await conn.writer.drain()

    server = upstreams.raw(echo_upper)
    with running_proxy(
        "--mode", f"tcp:127.0.0.1:{server.port}", flow_log=tmp_path / "f.jsonl"
    ) as p:
        s = connect(p.port)
        s.sendall(b"not http at all\x00\x01")
        s.shutdown(socket.SHUT_WR)
        assert recv_until_close(s) == b"NOT HTTP AT ALL\x00\x01"
        recs = p.records(1)
    assert recs[0]["kind"] == "tcp"
    assert recs[0]["mode"] == f"tcp:127.0.0.1:{server.port}"
    assert recs[0]["tunnel"]["bytes_client_to_server"] == 17
    assert recs[0]["tunnel"]["bytes_server_to_client"] == 17


def test_several_modes_at_once(upstreams: Upstreams) -> None:
    args = ["--mode", "regular@0", "--mode", f"reverse:{upstreams.url}@0"]
    with running_proxy(*args, modes=2) as p:
        (_, fwd), (_, rev) = p.addresses
        r1 = requests.get(
            f"{upstreams.url}/echo/f", proxies={"http": f"http://127.0.0.1:{fwd}"}, timeout=10
        )
        r2 = requests.get(f"http://127.0.0.1:{rev}/echo/r", timeout=10)
    assert r1.json()["path"] == "/echo/f"
    assert r2.json()["path"] == "/echo/r"


def test_conflicting_modes_refused() -> None:
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "proxy", "--mode", "regular@9", "--mode", "reverse:http://a@9"],
        capture_output=True, timeout=30, text=True,
    )  # fmt: skip
    assert out.returncode == 2
    assert "both listen on" in out.stderr
