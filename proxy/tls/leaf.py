"""Leaf certificates for intercepted hosts, signed by the local CA.

Design (see docs/tls.md):

* One leaf key pair per :class:`LeafIssuer`, made at construction and shared by
  every host, so a new host costs one signature (~0.1 ms), not a key
  generation. It is a different key from the CA's, so a leaked leaf key cannot
  sign certificates, and leaf and CA never share a key identifier (SChannel
  misbehaves when they do).
* Leaves live 180 days (browsers cap leaf lifetimes; mitmproxy found
  Chromium rejecting longer ones), never beyond the CA, and are backdated two
  days for clients with skewed clocks.
* ``server_tls`` hands out what a server endpoint needs for a host: the
  cached leaf and a pyOpenSSL ``SSL.Context``. A host's first connection
  gets a context shared by every host (one per ALPN preference), holding the
  shared key and the CA certificate, and the endpoint sets the leaf on its own
  connection (~0.09 ms more per handshake: OpenSSL parses and caches the
  leaf afresh). A host seen again gets a context of its own with the leaf in
  it (~0.2 ms once, then nothing per connection), kept in an LRU. So a
  stream of distinct hosts never pays for contexts, and a host a browser
  opens six connections to pays once (docs/performance.md, scenario d).
  Everything goes in as objects already in memory: no PEM is written or
  parsed, and no key material ever touches the disk.

Issuance is synchronous and never awaits. Called from the event loop, it
cannot interleave with itself, so concurrent connections to one host share a
single issuance through the cache without locks, futures or threads.
The issuer is not thread-safe: use it from one thread (the event loop's).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from OpenSSL import SSL

from proxy.tls.ca import BACKDATE, CertificateAuthority
from proxy.tls.keylog import KeyLog
from proxy.tls.names import general_name, normalize_name

__all__ = ["LEAF_VALIDITY", "KeyType", "LeafCert", "LeafIssuer", "ServerTls"]

KeyType = Literal["ec", "rsa"]

LEAF_VALIDITY = timedelta(days=180)
#: A cached leaf this close to expiry is re-issued rather than served.
RENEW_BEFORE = timedelta(days=1)
#: RFC 5280 upper bound for a CommonName; longer names go in the SAN only.
_MAX_CN = 64


@dataclass(frozen=True, slots=True)
class LeafCert:
    """An issued leaf. ``names`` are the normalized SANs, the requested host first.

    The key is the issuer's, shared by every leaf; it stays inside the issuer
    and the server contexts it builds.
    """

    names: tuple[str, ...]
    cert: x509.Certificate
    cert_pem: bytes

    @property
    def not_after(self) -> datetime:
        return self.cert.not_valid_after_utc


@dataclass(frozen=True, slots=True)
class ServerTls:
    """The server side of one intercepted host: a context and the host's leaf.

    ``shared``: the context serves every host, so the endpoint must set
    ``leaf`` on its connection; otherwise the leaf is already in the context.
    """

    context: SSL.Context
    leaf: LeafCert
    shared: bool


_LeafKey = tuple[tuple[str, ...], str | None]
_ContextKey = tuple[_LeafKey, tuple[str, ...]]


class LeafIssuer:
    """Issues and caches leaf certificates and the server contexts that present them.

    ``cache_size`` bounds the leaf cache (and the memory of hosts seen once);
    ``context_cache_size`` bounds the per-host contexts, which hold OpenSSL
    state. There is one shared context per ALPN preference list asked for
    (callers use a fixed few). ``clock`` exists for tests.
    """

    def __init__(
        self,
        ca: CertificateAuthority,
        key_type: KeyType = "ec",
        cache_size: int = 1000,
        *,
        context_cache_size: int = 256,
        clock: Callable[[], datetime] | None = None,
        keylog_filename: str | None = None,
    ) -> None:
        if cache_size < 1 or context_cache_size < 1:
            raise ValueError("cache sizes must be at least 1")
        self._ca = ca
        self._key_type: KeyType = key_type
        self._key = _generate_leaf_key(key_type)
        self._aki = _authority_key_identifier(ca.cert)
        self._cache_size = cache_size
        self._keylog = KeyLog(keylog_filename) if keylog_filename else None
        self._clock = clock or (lambda: datetime.now(UTC))
        self._leaves: OrderedDict[_LeafKey, LeafCert] = OrderedDict()
        self._context_cache_size = context_cache_size
        self._shared: dict[tuple[str, ...], SSL.Context] = {}
        self._contexts: OrderedDict[_ContextKey, tuple[SSL.Context, LeafCert]] = OrderedDict()
        self._seen: OrderedDict[_ContextKey, None] = OrderedDict()  # hosts served before
        self._issued = 0
        self._closed = False

    @property
    def ca(self) -> CertificateAuthority:
        return self._ca

    @property
    def key_type(self) -> KeyType:
        return self._key_type

    @property
    def issued_count(self) -> int:
        """How many certificates this issuer has signed (cache misses)."""
        return self._issued

    def issue(
        self, host: str, extra_sans: Sequence[str] = (), organization: str | None = None
    ) -> LeafCert:
        """A leaf for ``host`` (plus ``extra_sans``), from the cache when possible.

        ``ValueError`` if a name is not a usable host name or IP literal, or if
        the CA has expired.
        """
        return self._issue(self._leaf_key(host, extra_sans, organization))

    def server_tls(
        self,
        host: str,
        alpn: Sequence[str] = ("http/1.1",),
        extra_sans: Sequence[str] = (),
        organization: str | None = None,
    ) -> ServerTls:
        """The leaf for ``host`` (see :meth:`issue`) and a server context to present it.

        Contexts are TLS 1.2 minimum, hold the shared key and the CA
        certificate (sent as the chain), and offer ``alpn`` in order of
        preference (empty: no ALPN). They are safe to share between
        connections. See the module docstring for shared and per-host ones.
        """
        leaf_key = self._leaf_key(host, extra_sans, organization)
        leaf = self._issue(leaf_key)
        key: _ContextKey = (leaf_key, tuple(alpn))
        entry = self._contexts.get(key)
        if entry is not None and entry[1] is leaf:
            self._contexts.move_to_end(key)
            return ServerTls(entry[0], leaf, shared=False)
        if key in self._seen:
            self._seen.move_to_end(key)
            return ServerTls(self._own_context(key, leaf), leaf, shared=False)
        self._seen[key] = None
        while len(self._seen) > self._cache_size:
            self._seen.popitem(last=False)
        context = self._shared.get(key[1])
        if context is None:
            context = self._shared[key[1]] = self._build_context(key[1])
        return ServerTls(context, leaf, shared=True)

    def _own_context(self, key: _ContextKey, leaf: LeafCert) -> SSL.Context:
        context = self._build_context(key[1])
        context.use_certificate(leaf.cert)
        self._contexts[key] = (context, leaf)
        self._contexts.move_to_end(key)
        while len(self._contexts) > self._context_cache_size:
            self._contexts.popitem(last=False)
        return context

    def close(self) -> None:
        """Drop every cached leaf and context. The issuer cannot be used afterwards."""
        self._closed = True
        self._leaves.clear()
        self._contexts.clear()
        self._seen.clear()
        self._shared.clear()

    def __enter__(self) -> LeafIssuer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"<LeafIssuer {self._key_type} leaves={len(self._leaves)} "
            f"contexts={len(self._contexts)} issued={self._issued}>"
        )

    # -- internals ------------------------------------------------------------

    def _leaf_key(self, host: str, extra_sans: Sequence[str], organization: str | None) -> _LeafKey:
        if self._closed:
            raise RuntimeError("LeafIssuer is closed")
        names: list[str] = []
        for name in (host, *extra_sans):
            normalized = normalize_name(name)
            if normalized not in names:
                names.append(normalized)
        return tuple(names), (organization or None)

    def _fresh(self, not_after: datetime) -> bool:
        now = self._clock()
        if now >= not_after:
            return False
        # Re-issuing cannot extend a leaf already capped by the CA's expiry.
        return now + RENEW_BEFORE < not_after or not_after >= self._ca.not_after

    def _issue(self, key: _LeafKey) -> LeafCert:
        cached = self._leaves.get(key)
        if cached is not None and self._fresh(cached.not_after):
            self._leaves.move_to_end(key)
            return cached
        leaf = self._sign(*key)
        self._leaves[key] = leaf
        self._leaves.move_to_end(key)
        while len(self._leaves) > self._cache_size:
            self._leaves.popitem(last=False)
        return leaf

    def _sign(self, names: tuple[str, ...], organization: str | None) -> LeafCert:
        now = self._clock()
        not_after = min(now + LEAF_VALIDITY, self._ca.not_after)
        if not_after <= now:
            raise ValueError("the CA has expired; run `tapproxy ca regenerate`")
        subject: list[x509.NameAttribute[str]] = []
        if len(names[0]) <= _MAX_CN:
            subject.append(x509.NameAttribute(NameOID.COMMON_NAME, names[0]))
        if organization:
            subject.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
        key_usage = x509.KeyUsage(
            digital_signature=True,
            content_commitment=False,
            key_encipherment=self._key_type == "rsa",
            data_encipherment=False,
            key_agreement=False,
            key_cert_sign=False,
            crl_sign=False,
            encipher_only=False,
            decipher_only=False,
        )
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name(subject))
            .issuer_name(self._ca.cert.subject)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(not_after)
            # RFC 5280 4.2.1.6: the SAN must be critical when the subject is empty.
            .add_extension(
                x509.SubjectAlternativeName([general_name(n) for n in names]),
                critical=not subject,
            )
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(key_usage, critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
            .add_extension(self._aki, critical=False)
            .sign(self._ca.key, hashes.SHA256())
        )
        self._issued += 1
        cert_pem = cert.public_bytes(serialization.Encoding.PEM)
        return LeafCert(
            names=names,
            cert=cert,
            cert_pem=cert_pem,
        )

    def _build_context(self, alpn: tuple[str, ...]) -> SSL.Context:
        context = SSL.Context(SSL.TLS_SERVER_METHOD)
        context.set_min_proto_version(SSL.TLS1_2_VERSION)
        # No compression (CRIME) and our cipher order, as ssl's server
        # contexts have by default; also no client-initiated renegotiation
        # (a CPU DoS, RFC 5746 notwithstanding).
        context.set_options(
            SSL.OP_NO_COMPRESSION | SSL.OP_NO_RENEGOTIATION | SSL.OP_CIPHER_SERVER_PREFERENCE
        )
        # Every leaf carries the public half of this key, so a leaf set on the
        # context or on a connection (SSL_use_certificate) pairs with it.
        context.use_privatekey(self._key)
        context.add_extra_chain_cert(self._ca.cert)
        if alpn:
            context.set_alpn_select_callback(_alpn_chooser(alpn))
        if self._keylog is not None:
            context.set_keylog_callback(self._keylog.write)
        return context


def _alpn_chooser(
    preference: tuple[str, ...],
) -> Callable[[SSL.Connection, list[bytes]], bytes | SSL._NoOverlappingProtocols]:
    """RFC 7301 §3.2: the first of our protocols the client offers; none is no ALPN."""
    ours = [p.encode("latin-1") for p in preference]

    def choose(_conn: SSL.Connection, offered: list[bytes]) -> bytes | SSL._NoOverlappingProtocols:
        for protocol in ours:
            if protocol in offered:
                return protocol
        return SSL.NO_OVERLAPPING_PROTOCOLS  # carry on without ALPN, as ssl does

    return choose


def _generate_leaf_key(key_type: KeyType) -> ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey:
    if key_type == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "rsa":
        # For clients without ECDSA support; 2048 bits is what public CAs issue.
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    raise ValueError(f"unknown leaf key type {key_type!r} (use 'ec' or 'rsa')")


def _authority_key_identifier(ca_cert: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    """AKI pointing at the CA's own SKI (a user-supplied CA may lack one)."""
    try:
        ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key())  # type: ignore[arg-type]
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
