"""The upstream side of TLS: host-name matching and TlsClient over memory BIOs."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from proxy.tls.ca import CertificateAuthority
from proxy.tls.client import client_context, hostname_problem
from proxy.tls.endpoint import TlsClient, TlsEndpoint, TlsVerifyError
from proxy.tls.leaf import LeafIssuer

# -- host names (RFC 6125 §6.4, as OpenSSL's X509_check_host for Python's ssl) ----------


def _cert(sans: list[x509.GeneralName] | None, cn: str | None = None) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, cn)] if cn else [])
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "issuer")]))
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
    )
    if sans is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


MULTI = _cert(
    [
        x509.DNSName("www.example.com"),
        x509.DNSName("*.example.org"),
        x509.DNSName("f*.example.net"),
        x509.DNSName("*.com"),
        x509.DNSName("xn--bcher-kva.example"),
        x509.DNSName("192.0.2.9"),
        x509.IPAddress(ipaddress.ip_address("192.0.2.1")),
        x509.IPAddress(ipaddress.ip_address("2001:db8::1")),
    ],
    cn="cn.example",
)
CN_ONLY = _cert(None, cn="Legacy.Example")
SAN_AND_CN = _cert([x509.DNSName("a.example")], cn="b.example")


@pytest.mark.parametrize(
    ("der", "host", "ok"),
    [
        (MULTI, "www.example.com", True),
        (MULTI, "WWW.Example.COM.", True),  # case and a trailing dot do not matter
        (MULTI, "example.com", False),
        (MULTI, "a.example.org", True),  # a wildcard covers one whole label...
        (MULTI, "a.b.example.org", False),  # ...not two
        (MULTI, "example.org", False),  # ...and not none
        (MULTI, "foo.example.net", False),  # no partial wildcards (f*)
        (MULTI, "example.com.", False),  # "*.com" covers nothing
        (MULTI, "bücher.example", True),  # IDNA A-label in the SAN
        (MULTI, "cn.example", False),  # the CommonName counts only without DNS SANs
        (MULTI, "192.0.2.1", True),
        (MULTI, "192.0.2.2", False),
        (MULTI, "192.0.2.9", False),  # an IP is matched against IP SANs only
        (MULTI, "2001:db8::1", True),
        (MULTI, "2001:db8:0::1", True),
        (CN_ONLY, "legacy.example", True),
        (CN_ONLY, "other.example", False),
        (SAN_AND_CN, "a.example", True),
        (SAN_AND_CN, "b.example", False),
    ],
)
def test_hostname_matching(der: bytes, host: str, ok: bool) -> None:
    problem = hostname_problem(der, host)
    assert (problem is None) is ok, problem
    if not ok:
        kind = "IP address" if host[0].isdigit() else "Hostname"
        assert problem == f"{kind} mismatch, certificate is not valid for {host!r}."


# -- TlsClient against our own TlsEndpoint, no sockets ----------------------------------


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    return CertificateAuthority.create(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="module")
def issuer(ca: CertificateAuthority) -> LeafIssuer:
    return LeafIssuer(ca)


def _connect(client: TlsClient, server: TlsEndpoint) -> None:
    to_server = client.start()
    for _ in range(10):
        _, to_client = server.receive(to_server)
        _, to_server = client.receive(to_client)
        if client.handshake_done and server.handshake_done:
            return
    raise AssertionError("handshake did not finish")


@pytest.mark.parametrize("host", ["up.example", "127.0.0.1", "::1"])
def test_verified_handshake_and_data(
    ca: CertificateAuthority, issuer: LeafIssuer, host: str
) -> None:
    client = TlsClient(client_context(str(ca.cert_path)), host)
    server = TlsEndpoint(issuer.server_tls(host))
    _connect(client, server)
    # SNI for names only (RFC 6066 §3: "Literal IPv4 and IPv6 addresses are not permitted")
    expected_sni = None if host[0] in "1:" else host.encode()
    assert server._conn.get_servername() == expected_sni
    facts = client.facts()
    assert facts.alpn == "http/1.1" and facts.version == "TLSv1.3"
    der = issuer.issue(host).cert.public_bytes(serialization.Encoding.DER)
    assert client.peer_certificate() == der
    assert server.receive(client.send(b"ping"))[0] == b"ping"
    assert client.receive(server.send(b"pong"))[0] == b"pong"
    client.receive(server.close())
    assert client.peer_closed


def test_wrong_host_is_refused_before_any_data(
    ca: CertificateAuthority, issuer: LeafIssuer
) -> None:
    client = TlsClient(client_context(str(ca.cert_path)), "wanted.example")
    server = TlsEndpoint(issuer.server_tls("other.example"))
    with pytest.raises(TlsVerifyError, match=r"^Hostname mismatch, .*'wanted\.example'"):
        _connect(client, server)


def test_unknown_ca_is_refused(issuer: LeafIssuer, tmp_path: Path) -> None:
    other = CertificateAuthority.create(tmp_path)
    client = TlsClient(client_context(str(other.cert_path)), "up.example")
    server = TlsEndpoint(issuer.server_tls("up.example"))
    # Our endpoint sends its CA after the leaf: a root the client does not trust.
    with pytest.raises(
        TlsVerifyError,
        match=r"^self-signed certificate in certificate chain \(--upstream-ca FILE.*--insecure",
    ):
        _connect(client, server)


def test_insecure_accepts_anything(issuer: LeafIssuer) -> None:
    client = TlsClient(client_context(insecure=True), "wanted.example")
    _connect(client, TlsEndpoint(issuer.server_tls("other.example")))
    assert client.peer_certificate() is not None


def test_keylog_gets_both_secrets_of_a_handshake(
    ca: CertificateAuthority, issuer: LeafIssuer, tmp_path: Path
) -> None:
    log = tmp_path / "keys.log"
    client = TlsClient(client_context(str(ca.cert_path), keylog=str(log)), "up.example")
    _connect(client, TlsEndpoint(issuer.server_tls("up.example")))
    labels = {line.split()[0] for line in log.read_text().splitlines()}
    assert {"CLIENT_TRAFFIC_SECRET_0", "SERVER_TRAFFIC_SECRET_0"} <= labels


def test_without_upstream_ca_the_systems_roots_decide(
    ca: CertificateAuthority, issuer: LeafIssuer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No --upstream-ca: the default verify paths, which SSL_CERT_FILE points elsewhere."""
    server = issuer.server_tls("up.example")
    with pytest.raises(TlsVerifyError):  # our test CA is in no system store
        _connect(TlsClient(client_context(), "up.example"), TlsEndpoint(server))
    monkeypatch.setenv("SSL_CERT_FILE", str(ca.cert_path))
    client = TlsClient(client_context(), "up.example")
    _connect(client, TlsEndpoint(server))
    assert client.handshake_done


def test_a_bad_upstream_ca_file_is_a_clear_startup_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from proxy.cli.main import main

    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate\n")
    for path, reason in ((bad, "no certificate or crl found"), (tmp_path / "none", "no such file")):
        assert main(["-q", "-p", "0", "--upstream-ca", str(path)]) == 2
        err = capsys.readouterr().err
        assert f"--upstream-ca {path}: cannot load certificates ({reason}" in err
