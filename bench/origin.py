"""The benchmark origin server: nginx with its own config, or bench/upstream.py.

``start_origin(workdir, big_sizes, tls=True)`` starts nginx from the system
(``/usr/sbin/nginx``) with a config written into ``workdir``: one worker,
keep-alive on (no request limit), access log off, sendfile, serving

* ``/small``: a 100-byte file;
* ``/big<N>``: an N-byte file made with ``truncate`` (sparse: reads are zeros
  from the page cache, so the disk is never the bottleneck);
* the same files over HTTPS on a second port, with a wildcard certificate for
  ``*.bench.test`` (and IP 127.0.0.1) signed by a bench CA (``make_bench_pki``).

Without nginx it falls back to ``bench/upstream.py`` (``/small`` answers 100
bytes, big bodies come from ``/bytes/N``; one process per port).
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.common import LOAD_CPU, ROOT, Launched, free_port, launch, wait_port

SMALL_BODY = 100
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)


@dataclass
class BenchPKI:
    ca_pem: Path
    cert_pem: Path
    key_pem: Path


@dataclass
class Origin:
    kind: str
    http_port: int
    tls_port: int | None
    procs: list[Launched] = field(default_factory=list)
    cmd: str = ""

    def small_path(self) -> str:
        return "/small"

    def big_path(self, size: int) -> str:
        return f"/big{size}" if self.kind == "nginx" else f"/bytes/{size}"

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.http_port}{path}"

    def alive(self) -> bool:
        return all(p.alive() for p in self.procs)

    def stop(self) -> None:
        for p in self.procs:
            p.stop()


def self_signed_ca(key: Any, common_name: str) -> Any:
    """A 30-day CA certificate for ``key`` (EC or RSA): the bench's own CAs."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    now = datetime.now(UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False), True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )


def make_bench_pki(directory: Path) -> BenchPKI:
    """A bench CA and a ``*.bench.test`` (+ IP 127.0.0.1) server cert it signed."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory.mkdir(parents=True, exist_ok=True)
    pki = BenchPKI(directory / "bench-ca.pem", directory / "server.pem", directory / "server.key")
    if pki.ca_pem.exists() and pki.cert_pem.exists() and pki.key_pem.exists():
        return pki
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = self_signed_ca(ca_key, "tapproxy bench CA")
    ca_name = ca.subject
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench upstream")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=29))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("*.bench.test"),
                    x509.DNSName("bench.test"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    pki.ca_pem.write_bytes(ca.public_bytes(pem))
    pki.cert_pem.write_bytes(cert.public_bytes(pem))
    pki.key_pem.write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return pki


def _prewarm(path: Path) -> None:
    """Read a file once so that its pages are cached before the first timed download."""
    with open(path, "rb", buffering=0) as f:
        buf = bytearray(8 << 20)
        while f.readinto(buf):
            pass


def _nginx_conf(d: Path, http_port: int, tls_port: int | None, pki: BenchPKI | None) -> str:
    user = "user root;\n" if os.geteuid() == 0 else ""
    tls = ""
    if tls_port is not None and pki is not None:
        tls = f"""
    server {{
        listen 127.0.0.1:{tls_port} ssl backlog=4096;
        server_name bench.test *.bench.test;
        ssl_certificate {pki.cert_pem};
        ssl_certificate_key {pki.key_pem};
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_cache off;
        ssl_session_tickets off;
        root {d}/www;
        location = / {{ try_files /small =404; }}
    }}"""
    return f"""{user}daemon off;
master_process on;
worker_processes 1;
worker_rlimit_nofile 16384;
pid {d}/nginx.pid;
error_log {d}/nginx-error.log warn;
events {{
    worker_connections 16000;
    multi_accept on;
}}
http {{
    access_log off;
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_timeout 600s;
    keepalive_requests 100000000;
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    server {{
        listen 127.0.0.1:{http_port} backlog=4096;
        root {d}/www;
        location = / {{ try_files /small =404; }}
    }}{tls}
}}
"""


def start_origin(
    workdir: Path,
    big_sizes: tuple[int, ...] = (),
    *,
    tls: bool = False,
    pki: BenchPKI | None = None,
    prefer: str = "nginx",
) -> Origin:
    """Start the origin pinned to the load CPU; ``tls`` adds the HTTPS port."""
    workdir.mkdir(parents=True, exist_ok=True)
    if tls and pki is None:
        pki = make_bench_pki(workdir / "pki")
    if prefer == "nginx" and NGINX:
        www = workdir / "www"
        www.mkdir(exist_ok=True)
        (workdir / "tmp").mkdir(exist_ok=True)
        (www / "small").write_bytes(b"x" * (SMALL_BODY - 1) + b"\n")
        for size in big_sizes:
            f = www / f"big{size}"
            if not f.exists() or f.stat().st_size != size:
                with open(f, "wb") as fh:
                    fh.truncate(size)
            _prewarm(f)
        http_port = free_port()
        tls_port = free_port() if tls else None
        conf = workdir / "nginx.conf"
        conf.write_text(_nginx_conf(workdir, http_port, tls_port, pki))
        cmd = [NGINX, "-e", str(workdir / "nginx-error.log"), "-p", str(workdir), "-c", str(conf)]
        p = launch(cmd, cpu=LOAD_CPU, log=workdir / "nginx.out")
        origin = Origin("nginx", http_port, tls_port, [p], " ".join(p.cmd))
        try:
            wait_port(http_port, 15, p.popen)
            if tls_port:
                wait_port(tls_port, 15, p.popen)
        except RuntimeError as e:
            origin.stop()
            log = (workdir / "nginx-error.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"nginx did not start: {e}\n{log}") from e
        return origin
    script = str(ROOT / "bench" / "upstream.py")
    http_port = free_port()
    procs = [launch([sys.executable, script, str(http_port)], cpu=LOAD_CPU)]
    tls_port = None
    if tls and pki is not None:
        tls_port = free_port()
        procs.append(
            launch(
                [sys.executable, script, str(tls_port), str(pki.cert_pem), str(pki.key_pem)],
                cpu=LOAD_CPU,
            )
        )
    origin = Origin(
        "bench/upstream.py", http_port, tls_port, procs, " ; ".join(" ".join(p.cmd) for p in procs)
    )
    wait_port(http_port, 15, procs[0].popen)
    if tls_port:
        wait_port(tls_port, 15, procs[1].popen)
    return origin
