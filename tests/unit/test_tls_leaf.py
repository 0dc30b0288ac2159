"""Leaf issuance: certificate profile, chain verification, caches and real handshakes."""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from proxy.tls.ca import CertificateAuthority
from proxy.tls.endpoint import TlsEndpoint, TlsHandshakeError
from proxy.tls.leaf import LEAF_VALIDITY, KeyType, LeafIssuer, ServerTls
from proxy.tls.names import normalize_name, sans_from_certificate


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    return CertificateAuthority.load_or_create(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    return CertificateAuthority.load_or_create(tmp_path_factory.mktemp("other"))


@pytest.fixture(scope="module", params=["ec", "rsa"])
def issuer(request: pytest.FixtureRequest, ca: CertificateAuthority) -> Iterator[LeafIssuer]:
    key_type: KeyType = request.param
    with LeafIssuer(ca, key_type) as leaf_issuer:
        yield leaf_issuer


def _verify(
    ca: CertificateAuthority, leaf: x509.Certificate, name: x509.DNSName | x509.IPAddress
) -> None:
    """Path validation with cryptography's WebPKI-style verifier."""
    verifier = (
        PolicyBuilder().store(Store([ca.cert])).time(datetime.now(UTC)).build_server_verifier(name)
    )
    chain = verifier.verify(leaf, [])
    assert chain[-1] == ca.cert


# -- certificate profile -------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "extra", "san", "cn"),
    [
        ("example.com", (), [x509.DNSName("example.com")], "example.com"),
        ("Example.COM.", (), [x509.DNSName("example.com")], "example.com"),
        ("xn--bcher-kva.example", (), [x509.DNSName("xn--bcher-kva.example")], None),
        ("bücher.example", (), [x509.DNSName("xn--bcher-kva.example")], None),
        ("192.0.2.7", (), [x509.IPAddress(ipaddress.ip_address("192.0.2.7"))], "192.0.2.7"),
        ("[2001:db8::1]", (), [x509.IPAddress(ipaddress.ip_address("2001:db8::1"))], None),
        ("fe80::1%eth0", (), [x509.IPAddress(ipaddress.ip_address("fe80::1"))], "fe80::1"),
        (
            "www.example.org",
            ("*.example.org", "example.org", "WWW.example.org", "10.0.0.1"),
            [
                x509.DNSName("www.example.org"),
                x509.DNSName("*.example.org"),
                x509.DNSName("example.org"),
                x509.IPAddress(ipaddress.ip_address("10.0.0.1")),
            ],
            "www.example.org",
        ),
    ],
)
def test_sans_and_common_name(
    issuer: LeafIssuer,
    host: str,
    extra: tuple[str, ...],
    san: list[x509.GeneralName],
    cn: str | None,
) -> None:
    cert = issuer.issue(host, extra).cert
    got = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert list(got) == san
    cn_attrs = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    if cn is not None:
        assert [a.value for a in cn_attrs] == [cn]


def test_leaf_profile(issuer: LeafIssuer, ca: CertificateAuthority) -> None:
    leaf = issuer.issue("profile.example")
    cert = leaf.cert
    assert cert.issuer == ca.cert.subject
    assert isinstance(cert.signature_hash_algorithm, hashes.SHA256)
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and not bc.value.ca
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature and not ku.value.key_cert_sign
    assert ku.value.key_encipherment is (issuer.key_type == "rsa")
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = ca.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert not san.critical  # the subject has a CN
    now = datetime.now(UTC)
    assert timedelta(days=1) < now - cert.not_valid_before_utc <= timedelta(days=2, minutes=1)
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert lifetime < timedelta(days=200)
    assert cert.not_valid_after_utc - now <= LEAF_VALIDITY
    assert x509.load_pem_x509_certificate(leaf.cert_pem) == cert


def test_one_shared_leaf_key_distinct_from_the_ca(
    issuer: LeafIssuer, ca: CertificateAuthority
) -> None:
    a, b = issuer.issue("a.example"), issuer.issue("b.example")
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert a.cert.public_key().public_bytes(*spki) == b.cert.public_key().public_bytes(*spki)
    assert a.cert.public_key().public_bytes(*spki) != ca.cert.public_key().public_bytes(*spki)
    assert a.cert.serial_number != b.cert.serial_number
    expected = ec.EllipticCurvePublicKey if issuer.key_type == "ec" else rsa.RSAPublicKey
    assert isinstance(a.cert.public_key(), expected)


def test_new_host_costs_a_signature_not_a_key(
    issuer: LeafIssuer, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_keygen(*args: object, **kwargs: object) -> None:
        raise AssertionError("a key was generated for a new host")

    monkeypatch.setattr(ec, "generate_private_key", no_keygen)
    monkeypatch.setattr(rsa, "generate_private_key", no_keygen)
    issuer.issue("fresh-host.example")
    issuer.server_tls("fresh-context.example")


def test_long_name_goes_in_the_san_only(issuer: LeafIssuer, ca: CertificateAuthority) -> None:
    host = ("a" * 60 + ".") * 3 + "example"
    cert = issuer.issue(host).cert
    assert cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME) == []
    assert cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).critical
    _verify(ca, cert, x509.DNSName(host))


def test_organization(issuer: LeafIssuer) -> None:
    cert = issuer.issue("org.example", organization="Example Corp").cert
    orgs = cert.subject.get_attributes_for_oid(x509.NameOID.ORGANIZATION_NAME)
    assert [a.value for a in orgs] == ["Example Corp"]
    assert issuer.issue("org.example") is not issuer.issue("org.example", organization="X")


@pytest.mark.parametrize(
    "bad",
    ["", ".", "exa mple.com", "*.com", "*", "foo*.example", "-a.example", "a-.example",
     "a..example", "a" * 64 + ".example", "x." * 127 + "com", "ex/ample.com", "1.2.3.4:443",
     "[example.com]", "[192.0.2.1]", "[::1"],
)  # fmt: skip
def test_unusable_names_are_rejected(issuer: LeafIssuer, bad: str) -> None:
    with pytest.raises(ValueError):
        issuer.issue(bad)
    with pytest.raises(ValueError):
        issuer.issue("ok.example", extra_sans=[bad])


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [("A.Example.", "a.example"), ("*.Example.com", "*.example.com"), ("[::1]", "::1"),
     ("::ffff:1.2.3.4", "::ffff:102:304"), ("under_score.example", "under_score.example")],
)  # fmt: skip
def test_normalize_name(raw: str, normalized: str) -> None:
    assert normalize_name(raw) == normalized


# -- chain verification ------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "extra", "verify_as"),
    [
        ("verify.example", (), x509.DNSName("verify.example")),
        ("203.0.113.9", (), x509.IPAddress(ipaddress.ip_address("203.0.113.9"))),
        ("2001:db8::9", (), x509.IPAddress(ipaddress.ip_address("2001:db8::9"))),
        ("api.example.com", ("*.example.com",), x509.DNSName("other.example.com")),
    ],
)
def test_chain_verifies_against_the_ca(
    issuer: LeafIssuer,
    ca: CertificateAuthority,
    other_ca: CertificateAuthority,
    host: str,
    extra: tuple[str, ...],
    verify_as: x509.DNSName | x509.IPAddress,
) -> None:
    cert = issuer.issue(host, extra).cert
    _verify(ca, cert, verify_as)
    with pytest.raises(VerificationError):
        _verify(other_ca, cert, verify_as)


def test_chain_does_not_verify_for_another_name(
    issuer: LeafIssuer, ca: CertificateAuthority
) -> None:
    with pytest.raises(VerificationError):
        _verify(ca, issuer.issue("right.example").cert, x509.DNSName("wrong.example"))


def test_leaf_never_outlives_the_ca(tmp_path: Path) -> None:
    short = CertificateAuthority.create(tmp_path, validity=timedelta(days=40))
    cert = LeafIssuer(short).issue("short.example").cert
    assert cert.not_valid_after_utc == short.not_after


# -- caches --------------------------------------------------------------------------


def test_leaf_cache_reuse_and_lru_eviction(ca: CertificateAuthority) -> None:
    issuer = LeafIssuer(ca, cache_size=2)
    a = issuer.issue("a.example")
    assert issuer.issue("A.EXAMPLE.") is a
    assert issuer.issued_count == 1
    issuer.issue("b.example")
    assert issuer.issue("a.example") is a  # refreshes a: b is now least recent
    issuer.issue("c.example")  # evicts b
    assert issuer.issue("a.example") is a
    assert issuer.issued_count == 3
    issuer.issue("b.example")
    assert issuer.issued_count == 4


def test_a_host_seen_once_shares_a_context_and_gets_its_own_when_seen_again(
    ca: CertificateAuthority,
) -> None:
    issuer = LeafIssuer(ca, cache_size=3, context_cache_size=1)
    a1 = issuer.server_tls("a.example")
    assert a1.shared and a1.leaf is issuer.issue("a.example")
    b1 = issuer.server_tls("b.example")
    assert b1.shared and b1.context is a1.context and b1.leaf is not a1.leaf
    a2 = issuer.server_tls("a.example")  # seen again: a context of its own
    assert not a2.shared and a2.context is not a1.context and a2.leaf is a1.leaf
    assert issuer.server_tls("a.example") == a2
    h2 = issuer.server_tls("a.example", alpn=("h2", "http/1.1"))  # another ALPN: new key
    assert h2.shared and h2.context is not a1.context and h2.leaf is a1.leaf
    b2 = issuer.server_tls("b.example")  # evicts a.example's own context (size 1)
    assert not b2.shared
    a3 = issuer.server_tls("a.example")  # known, so straight to a new own context
    assert not a3.shared and a3.context is not a2.context
    assert issuer.issued_count == 2  # contexts came and went; leaves stayed cached
    issuer.close()
    with pytest.raises(RuntimeError, match="closed"):
        issuer.server_tls("a.example")


def test_leaf_is_reissued_before_it_expires(ca: CertificateAuthority) -> None:
    now = [datetime.now(UTC)]
    issuer = LeafIssuer(ca, clock=lambda: now[0])
    first = issuer.issue("renew.example")
    now[0] += LEAF_VALIDITY - timedelta(days=10)
    assert issuer.issue("renew.example") is first
    assert issuer.server_tls("renew.example").leaf is first
    now[0] += timedelta(days=9, hours=12)  # 12 hours before expiry
    second = issuer.issue("renew.example")
    assert second is not first
    assert second.not_after > first.not_after
    assert issuer.server_tls("renew.example").leaf is second


def test_concurrent_tasks_share_one_issuance(ca: CertificateAuthority) -> None:
    issuer = LeafIssuer(ca)

    async def handshake(host: str) -> ServerTls:
        await asyncio.sleep(0)
        return issuer.server_tls(host)

    async def run() -> list[ServerTls]:
        return await asyncio.gather(*(handshake("same.example") for _ in range(20)))

    servers = asyncio.run(run())
    assert all(s.leaf is servers[0].leaf for s in servers)
    assert servers[0].shared and len({id(s.context) for s in servers[1:]}) == 1
    assert issuer.issued_count == 1


# -- sans_from_certificate -------------------------------------------------------


def test_sans_from_certificate_round_trip(issuer: LeafIssuer) -> None:
    leaf = issuer.issue(
        "www.example.net", ["*.example.net", "192.0.2.1", "2001:db8::2"], "Example Net"
    )
    der = leaf.cert.public_bytes(serialization.Encoding.DER)
    names, org = sans_from_certificate(der)
    assert names == ["www.example.net", "*.example.net", "192.0.2.1", "2001:db8::2"]
    assert org == "Example Net"
    copy = issuer.issue("www.example.net", names, org)
    assert copy is leaf


def test_sans_from_certificate_falls_back_to_cn_and_skips_bad_names() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "Legacy.Example")])
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
    )
    der = builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)
    assert sans_from_certificate(der) == (["legacy.example"], None)
    with_bad = builder.add_extension(
        x509.SubjectAlternativeName([x509.DNSName("bad name"), x509.DNSName("ok.example")]),
        critical=False,
    ).sign(key, hashes.SHA256())
    assert sans_from_certificate(with_bad.public_bytes(serialization.Encoding.DER)) == (
        ["ok.example"],
        None,
    )
    with pytest.raises(ValueError):
        sans_from_certificate(b"\x30\x03garbage")


# -- real handshakes over memory BIOs ------------------------------------------------


def _client_context(ca: CertificateAuthority, alpn: list[str] | None = None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # check_hostname and CERT_REQUIRED
    context.load_verify_locations(cadata=ca.cert_pem.decode("ascii"))
    # What Python 3.13's create_default_context adds: RFC 5280 strictness.
    context.verify_flags |= ssl.VERIFY_X509_STRICT
    if alpn:
        context.set_alpn_protocols(alpn)
    return context


class _Pair:
    """An ``ssl`` client and our server endpoint wired together through memory BIOs."""

    def __init__(self, client_ctx: ssl.SSLContext, server_ctx: ServerTls, host: str) -> None:
        self.c_in, self.c_out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.client = client_ctx.wrap_bio(self.c_in, self.c_out, server_hostname=host)
        self.server = TlsEndpoint(server_ctx, sni=host)
        self.received = b""

    def pump(self) -> None:
        plain, out = self.server.receive(self.c_out.read())
        self.received += plain
        self.c_in.write(out)


def _handshake(client_ctx: ssl.SSLContext, server_ctx: ServerTls, server_hostname: str) -> _Pair:
    """Drive a TLS handshake between an ``ssl`` client and our endpoint, no sockets."""
    pair = _Pair(client_ctx, server_ctx, server_hostname)
    for _ in range(10):
        try:
            pair.client.do_handshake()
        except ssl.SSLWantReadError:
            pass
        else:
            if pair.server.handshake_done:
                return pair
        pair.pump()
    raise AssertionError("handshake did not finish")


@pytest.mark.parametrize("host", ["handshake.example", "127.0.0.1", "::1"])
def test_handshake_succeeds_for_the_right_host(
    issuer: LeafIssuer, ca: CertificateAuthority, host: str
) -> None:
    server_ctx = issuer.server_tls(host, alpn=("http/1.1",))
    pair = _handshake(_client_context(ca, ["h2", "http/1.1"]), server_ctx, host)
    assert pair.client.selected_alpn_protocol() == "http/1.1"
    assert pair.client.version() in ("TLSv1.2", "TLSv1.3")
    peer = pair.client.getpeercert(binary_form=True)
    assert peer is not None
    assert x509.load_der_x509_certificate(peer) == issuer.issue(host).cert
    pair.client.write(b"ping")
    pair.pump()
    assert pair.received == b"ping"


@pytest.mark.parametrize(
    ("server_host", "client_host", "use_other_ca"),
    [
        ("right.example", "right.example", True),
        ("right.example", "wrong.example", False),
        ("192.0.2.1", "192.0.2.2", False),
    ],
)
def test_handshake_fails_for_another_ca_or_host(
    issuer: LeafIssuer,
    ca: CertificateAuthority,
    other_ca: CertificateAuthority,
    server_host: str,
    client_host: str,
    use_other_ca: bool,
) -> None:
    client_ctx = _client_context(other_ca if use_other_ca else ca)
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(client_ctx, issuer.server_tls(server_host), client_host)


def test_server_tls_is_tls12_minimum_and_speaks_tls12(
    issuer: LeafIssuer, ca: CertificateAuthority
) -> None:
    server_ctx = issuer.server_tls("old.example")
    client_ctx = _client_context(ca)
    client_ctx.minimum_version = client_ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    assert _handshake(client_ctx, server_ctx, "old.example").client.version() == "TLSv1.2"
    old = _client_context(ca)
    old.set_ciphers("DEFAULT:@SECLEVEL=0")  # lets this OpenSSL offer TLS 1.1 at all
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        old.minimum_version = old.maximum_version = ssl.TLSVersion.TLSv1_1
    with pytest.raises(TlsHandshakeError, match="unsupported protocol"):
        _handshake(old, server_ctx, "old.example")
