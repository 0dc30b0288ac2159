"""Host names and IP literals as certificates carry them.

``normalize_name`` makes the canonical SAN text a leaf is issued for (and
cached under); ``sans_from_certificate`` and ``certificate_names`` read the
names of a real upstream certificate, so that a forged leaf covers what the
original did (RFC 5280 §4.2.1.6 for the SAN, RFC 6125 §6.4.3 for the
leftmost-label wildcard).
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import re

from cryptography import x509
from cryptography.x509.oid import NameOID

_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")


def normalize_name(name: str) -> str:
    """Canonical SAN text for a host name or IP literal; ``ValueError`` if unusable.

    Lower-cases, drops a trailing dot, unwraps ``[v6]`` brackets and IPv6 zone
    ids, IDNA-encodes Unicode names, and accepts a wildcard only as the whole
    leftmost label (``*.example.com``).
    """
    text = name.strip()
    bracketed = text.startswith("[") and text.endswith("]")
    ip = parse_ip(text[1:-1] if bracketed else text)
    if ip is not None and (ip.version == 6 or not bracketed):
        return str(ip)
    if bracketed:
        raise ValueError(f"only IPv6 literals go in brackets: {name!r}")
    text = text.rstrip(".").lower()
    if not text.isascii():
        try:
            text = text.encode("idna").decode("ascii")
        except UnicodeError as e:
            raise ValueError(f"not a valid IDNA host name: {name!r}") from e
    labels = text.split(".")
    if labels[0] == "*" and len(labels) > 2:
        labels = labels[1:]
    if len(text) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        raise ValueError(f"not a valid host name: {name!r}")
    return text


#: What an IPv4 or IPv6 address (before a zone id) can be made of; a name
#: with any other character is no IP, known without ``ip_address`` raising
#: (~5 µs a name).
_IP_CHARS = frozenset("0123456789abcdefABCDEF.:")


def parse_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The IP address ``text`` is (an IPv6 zone id dropped), or None for a name."""
    address = text.partition("%")[0]
    if not _IP_CHARS.issuperset(address):
        return None
    try:
        return ipaddress.ip_address(address)
    except ValueError:
        return None


def general_name(name: str) -> x509.GeneralName:
    """A name as a SAN entry: an IP address, else a DNS name."""
    ip = parse_ip(name)
    return x509.IPAddress(ip) if ip is not None else x509.DNSName(name)


def sans_from_certificate(der: bytes) -> tuple[list[str], str | None]:
    """The DNS and IP names and the organization of a real upstream certificate.

    Feed the result to :meth:`LeafIssuer.issue` as ``extra_sans`` and
    ``organization`` so a forged leaf covers what the original covered
    (wildcards, multi-name certificates). Names we could not put in a leaf
    are skipped. Falls back to the CommonName when there is no SAN.
    Raises ``ValueError`` if ``der`` is not a DER certificate.
    """
    cert = x509.load_der_x509_certificate(der)
    raw: list[str] = []
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        pass
    else:
        raw.extend(san.get_values_for_type(x509.DNSName))
        raw.extend(str(ip) for ip in san.get_values_for_type(x509.IPAddress))
    if not raw:
        raw.extend(_text_attrs(cert.subject, NameOID.COMMON_NAME))
    names: list[str] = []
    for value in raw:
        with contextlib.suppress(ValueError):
            normalized = normalize_name(value)
            if normalized not in names:
                names.append(normalized)
    orgs = _text_attrs(cert.subject, NameOID.ORGANIZATION_NAME)
    return names, (orgs[0] if orgs else None)


@functools.lru_cache(maxsize=256)
def certificate_names(der: bytes) -> tuple[tuple[str, ...], str | None]:
    """:func:`sans_from_certificate`, remembered per certificate.

    Many upstream hosts share one certificate (a wildcard, a CDN's), and a
    new connection reads its names twice (for the leaf, for the flow log):
    parsing once per certificate saves ~25 µs each time (docs/performance.md).
    """
    names, org = sans_from_certificate(der)
    return tuple(names), org


def _text_attrs(name: x509.Name, oid: x509.ObjectIdentifier) -> list[str]:
    return [a.value for a in name.get_attributes_for_oid(oid) if isinstance(a.value, str)]
