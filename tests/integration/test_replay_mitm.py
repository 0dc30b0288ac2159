"""Record and replay HTTPS through interception (``--mitm``): the recording
holds the decrypted exchanges, and server replay answers them inside the
client's TLS with no connection to the origin."""

from __future__ import annotations

from pathlib import Path

import requests

from proxy.replay.reader import load
from proxy.tls.ca import CA_CERT_PEM
from tests.support.certs import CertAuthority
from tests.support.proxyproc import running_proxy
from tests.support.replay_service import CountingListener
from tests.support.upstreams import Upstreams, make_app, start_https

PATHS = ("/bytes/100000", "/echo/api?x=1", "/chunked/5000", "/bytes/0")


def test_mitm_recording_replays_inside_tls(upstreams: Upstreams, tmp_path: Path) -> None:
    ca = CertAuthority.create(tmp_path / "origin-ca")
    cert = ca.server_cert(["localhost", "127.0.0.1"], "origin.pem")
    runner, port = upstreams.call(start_https(make_app(), str(cert)))
    certs = tmp_path / "certs"
    origin = f"https://localhost:{port}"
    recording = tmp_path / "tls.tap"
    try:
        args = ("--mitm", "--certs", str(certs), "--upstream-ca", str(ca.cert_path),
                "--save", str(recording))  # fmt: skip
        with running_proxy(*args) as p:
            session = requests.Session()
            session.proxies = {"https": p.url}
            session.verify = str(certs / CA_CERT_PEM)
            recorded = [
                session.get(f"{origin}{path}", timeout=10, verify=session.verify) for path in PATHS
            ]
    finally:
        upstreams.call(runner.cleanup())
    assert [r.status_code for r in recorded] == [200] * len(PATHS)
    flows = load(recording).flows
    assert [f.request.url for f in flows if f.request and f.kind == "http"] == [
        f"{origin}{path}" for path in PATHS
    ]
    assert all(f.tls for f in flows if f.kind == "http")

    listener = CountingListener(port)
    listener6 = CountingListener(port, "::1")  # localhost may be either
    try:
        args = ("--mitm", "--certs", str(certs), "--server-replay", str(recording),
                "--server-replay-speed", "0")  # fmt: skip
        with running_proxy(*args) as p:
            session = requests.Session()
            session.proxies = {"https": p.url}
            session.verify = str(certs / CA_CERT_PEM)
            replayed = [
                session.get(f"{origin}{path}", timeout=10, verify=session.verify) for path in PATHS
            ]
        assert listener.count() == listener6.count() == 0
    finally:
        listener.close()
        listener6.close()
    for before, after in zip(recorded, replayed, strict=True):
        assert (after.status_code, after.content) == (before.status_code, before.content)
