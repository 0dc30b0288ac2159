"""The client side of TLS to upstream servers: context and verification (sans-IO).

tapproxy connects to each upstream with TLS of its own (when it intercepts,
and for ``https://`` reverse targets) and must verify that server as a
browser would: a chain to a trusted root, then the host name. This module
builds that client context on pyOpenSSL, over the OpenSSL that
``cryptography`` ships. On this machine Python's ``ssl`` links OpenSSL 3.0,
whose key decoders made an upstream handshake ~0.6 ms of CPU against ~0.4
here (docs/performance.md, scenario d).

What it checks, as ``ssl.create_default_context()`` does:

* TLS 1.2 or later; the system's trusted roots (pyOpenSSL finds Debian's
  bundle when the wheel's own path is empty), plus ``--upstream-ca``.
* The chain, by OpenSSL (``SSL_VERIFY_PEER``); its reason is kept and named in
  the 502 (``certificate has expired``).
* The host name, in the verify callback for the leaf: RFC 6125 §6.4 on the
  subjectAltName DNS names (a wildcard only as the whole leftmost label, one
  label deep), IP addresses against IP SANs only, and the subject's
  CommonName only when there is no DNS SAN, as OpenSSL's ``X509_check_host``
  does for Python. A mismatch fails the handshake, so no request is sent.

``--insecure`` turns all verification off.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Sequence
from typing import TypeGuard

from cryptography import x509
from cryptography.x509.oid import NameOID
from OpenSSL import SSL, crypto

from proxy.tls.keylog import KeyLog
from proxy.tls.names import parse_ip

__all__ = ["Verification", "client_context", "hostname_problem"]

#: OpenSSL's X509_V_ERR_* codes (x509_vfy.h, stable since 0.9.8) and their
#: texts, for the 502 body; other codes are named by number.
_VERIFY_MESSAGES = {
    2: "unable to get issuer certificate",
    4: "unable to decrypt certificate's signature",
    7: "certificate signature failure",
    9: "certificate is not yet valid",
    10: "certificate has expired",
    18: "self-signed certificate",
    19: "self-signed certificate in certificate chain",
    20: "unable to get local issuer certificate",
    21: "unable to verify the first certificate",
    22: "certificate chain too long",
    23: "certificate revoked",
    24: "invalid CA certificate",
    25: "path length constraint exceeded",
    26: "unsupported certificate purpose",
    28: "certificate rejected",
    47: "permitted subtree violation",
    48: "excluded subtree violation",
}


def verify_message(errno: int) -> str:
    return _VERIFY_MESSAGES.get(errno, f"X.509 verification error {errno}")


def client_context(
    cafile: str | None = None,
    insecure: bool = False,
    keylog: str | None = None,
    alpn: Sequence[str] = ("http/1.1",),
) -> SSL.Context:
    """A client context for upstream connections, shared by all of them."""
    context = SSL.Context(SSL.TLS_CLIENT_METHOD)
    context.set_min_proto_version(SSL.TLS1_2_VERSION)
    context.set_options(SSL.OP_NO_COMPRESSION | SSL.OP_NO_RENEGOTIATION)
    if insecure:
        context.set_verify(SSL.VERIFY_NONE)
    else:
        context.set_default_verify_paths()
        if cafile:
            context.load_verify_locations(cafile)
        context.set_verify(SSL.VERIFY_PEER, _verify)
    if alpn:
        context.set_alpn_protos([p.encode("latin-1") for p in alpn])
    if keylog:
        context.set_keylog_callback(KeyLog(keylog).write)
    return context


class Verification:
    """One connection's verification: the name wanted, and what the callback found.

    Kept as the connection's app data. It must not refer back to the
    connection: that cycle would hold OpenSSL's buffers until the cyclic
    collector ran (seen as +28 MB RSS over scenario d).
    """

    __slots__ = ("error", "hostname", "peer_der")

    def __init__(self, hostname: str) -> None:
        self.hostname = hostname
        self.error: str | None = None
        self.peer_der: bytes | None = None


def _verify(conn: SSL.Connection, cert: crypto.X509, errno: int, depth: int, ok: int) -> bool:
    """pyOpenSSL's verify callback: OpenSSL's verdict per certificate, then the name."""
    state: Verification = conn.get_app_data()
    if not ok:
        if state.error is None:
            state.error = verify_message(errno)
        return False
    if depth == 0:
        der = crypto.dump_certificate(crypto.FILETYPE_ASN1, cert)
        state.peer_der = der
        try:
            problem = hostname_problem(der, state.hostname)
        except ValueError as e:  # OpenSSL read it; cryptography's stricter parser did not
            problem = f"cannot read the certificate's names ({e})"
        if problem is not None:
            state.error = problem
            return False
    return True


def hostname_problem(der: bytes, host: str) -> str | None:
    """Why the certificate ``der`` is not valid for ``host``; None if it is."""
    dns, ips, common_names = _identities(der)
    ip = parse_ip(host)
    if ip is not None:
        if ip in ips:
            return None
        return f"IP address mismatch, certificate is not valid for {host!r}."
    wanted = _canonical(host)
    if wanted is not None and any(_dns_match(p, wanted) for p in (dns or common_names)):
        return None
    return f"Hostname mismatch, certificate is not valid for {host!r}."


_Ip = ipaddress.IPv4Address | ipaddress.IPv6Address


@functools.lru_cache(maxsize=256)
def _identities(der: bytes) -> tuple[tuple[str, ...], frozenset[_Ip], tuple[str, ...]]:
    """DNS SANs, IP SANs and CommonNames of a certificate, parsed once per certificate.

    Names come lower-cased without a trailing dot, ready for ``_dns_match``.
    """
    cert = x509.load_der_x509_certificate(der)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        dns: list[str] = []
        ips: list[_Ip] = []
    else:
        dns = san.get_values_for_type(x509.DNSName)
        ips = [ip for ip in san.get_values_for_type(x509.IPAddress) if _is_address(ip)]
    cns = [
        a.value.rstrip(".").lower()  # compared as given: no IDNA, as X509_check_host
        for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        if isinstance(a.value, str)
    ]
    canonical = (_canonical(n) for n in dns)
    return tuple(n for n in canonical if n), frozenset(ips), tuple(cns)


def _is_address(value: object) -> TypeGuard[_Ip]:
    return isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address)


def _canonical(name: str) -> str | None:
    """Lower-case ASCII without a trailing dot (IDNA for Unicode); None if unusable."""
    name = name.rstrip(".").lower()
    if name.isascii():
        return name or None
    try:
        return name.encode("idna").decode("ascii")
    except UnicodeError:
        return None


def _dns_match(pattern: str, host: str) -> bool:
    """RFC 6125 §6.4.3: exact, or ``*.rest`` matching one whole leftmost label.

    Both sides come canonical: ``pattern`` from ``_identities``, ``host``
    from ``_canonical``.
    """
    if pattern == host:
        return True
    if not pattern.startswith("*.") or "*" in pattern[1:]:
        return False
    rest = pattern[2:]
    if "." not in rest:  # "*.com": no wildcard over a single label (OpenSSL refuses it too)
        return False
    label, _, parent = host.partition(".")
    return bool(label) and parent == rest
