"""TLS interception support: the local CA, leaf issuance, both TLS ends, a ClientHello reader.

``proxy.tls.ca``
    :class:`CertificateAuthority` (create/load the CA files, export the
    certificate) and :func:`default_certs_dir`.
``proxy.tls.leaf``
    :class:`LeafIssuer` signs per-host leaves with one shared key and hands
    out server contexts (pyOpenSSL, shared or per host); :func:`sans_from_certificate`
    copies names from a real upstream certificate.
``proxy.tls.endpoint``
    :class:`TlsEndpoint` and :class:`TlsClient`: the server side of an
    intercepted TLS connection and our own connection upstream, over memory
    BIOs (ciphertext in, plaintext out).
``proxy.tls.client``
    :func:`client_context` for upstream connections and their verification
    (chain by OpenSSL, host name by RFC 6125 §6.4).
``proxy.tls.keylog``
    :class:`KeyLog`: NSS key log lines for Wireshark, from both sides.
``proxy.tls.clienthello``
    :func:`parse_client_hello` / :func:`looks_like_tls`: sans-IO peeking at the
    first bytes of a connection (SNI, ALPN, versions).

All of it is pure code: no sockets, no event loop. See docs/tls.md.
"""

from proxy.tls.ca import CAError, CertificateAuthority, default_certs_dir
from proxy.tls.clienthello import (
    ClientHello,
    ClientHelloError,
    looks_like_tls,
    parse_client_hello,
)
from proxy.tls.leaf import LeafCert, LeafIssuer
from proxy.tls.names import normalize_name, sans_from_certificate

__all__ = [
    "CAError",
    "CertificateAuthority",
    "ClientHello",
    "ClientHelloError",
    "LeafCert",
    "LeafIssuer",
    "default_certs_dir",
    "looks_like_tls",
    "normalize_name",
    "parse_client_hello",
    "sans_from_certificate",
]
