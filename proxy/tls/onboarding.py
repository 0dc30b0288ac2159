"""``http://tapproxy.ca/``: the CA certificate and how to trust it.

Answered by the proxy itself for any client that uses it (like mitmproxy's
mitm.it). Only the certificate is ever served, never the key; the page is
static text built from the CA's exports.
"""

from __future__ import annotations

import html

from proxy.tls.ca import CertificateAuthority

HOST = "tapproxy.ca"

_STEPS = [
    ("Linux (Debian/Ubuntu system store)",
     "sudo cp tapproxy-ca.pem /usr/local/share/ca-certificates/tapproxy-ca.crt && sudo update-ca-certificates"),
    ("Linux (Fedora/RHEL)",
     "sudo cp tapproxy-ca.pem /etc/pki/ca-trust/source/anchors/ && sudo update-ca-trust"),
    ("Firefox", "Settings > Privacy & Security > Certificates > View Certificates > Authorities > "
     "Import tapproxy-ca.pem, tick 'Trust this CA to identify websites'."),
    ("Chrome/Chromium on Linux (NSS)",
     'certutil -d sql:$HOME/.pki/nssdb -A -t "C,," -n tapproxy -i tapproxy-ca.pem'),
    ("macOS", "sudo security add-trusted-cert -d -r trustRoot -k /Library/Keychains/System.keychain "
     "tapproxy-ca.pem"),
    ("Windows", "certutil -addstore root tapproxy-ca.cer (as administrator), or double-click the .cer "
     "and place it in 'Trusted Root Certification Authorities'."),
    ("Android", "Settings > Security > Encryption & credentials > Install a certificate > CA certificate, "
     "pick tapproxy-ca.cer. Apps must opt in to user CAs (network_security_config)."),
    ("iOS", "Open http://tapproxy.ca/cert/pem in Safari, install the profile, then Settings > General > "
     "About > Certificate Trust Settings > enable full trust for the tapproxy CA."),
    ("Python (requests, httpx)", "export REQUESTS_CA_BUNDLE=/path/to/tapproxy-ca.pem SSL_CERT_FILE=/path/to/tapproxy-ca.pem"),
    ("curl", "curl --cacert tapproxy-ca.pem ... or export CURL_CA_BUNDLE=/path/to/tapproxy-ca.pem"),
    ("Node.js", "export NODE_EXTRA_CA_CERTS=/path/to/tapproxy-ca.pem"),
]  # fmt: skip

_FORMATS = {
    "pem": ("application/x-pem-file", "tapproxy-ca.pem"),
    "der": ("application/x-x509-ca-cert", "tapproxy-ca.cer"),
    "p12": ("application/x-pkcs12", "tapproxy-ca.p12"),
}


def _response(status: int, ctype: str, body: bytes, extra: bytes = b"") -> bytes:
    reason = {200: b"OK", 404: b"Not Found"}.get(status, b"OK")
    return (
        b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\nCache-Control: no-store\r\n%s\r\n"
        % (status, reason, ctype.encode(), len(body), extra)
    ) + body


def page(ca: CertificateAuthority) -> bytes:
    items = "".join(
        f"<h3>{html.escape(name)}</h3><pre>{html.escape(step)}</pre>" for name, step in _STEPS
    )
    body = (
        "<!doctype html><meta charset=utf-8><title>tapproxy CA</title>"
        "<h1>Trust the tapproxy certificate authority</h1>"
        f"<p>Fingerprint (SHA-256): <code>{html.escape(ca.fingerprint())}</code></p>"
        "<p>Download: <a href=/cert/pem>PEM</a> · <a href=/cert/der>DER (.cer)</a> · "
        "<a href=/cert/p12>PKCS#12</a></p>"
        f"{items}"
    ).encode()
    return _response(200, "text/html; charset=utf-8", body)


def not_enabled() -> bytes:
    body = (
        b"TLS interception is off, so there is no CA to trust yet.\n"
        b"Start the proxy with --mitm (or --mitm-hosts REGEX); the CA is created on first use.\n"
    )
    return _response(200, "text/plain; charset=utf-8", body)


def respond(ca: CertificateAuthority, path: bytes) -> bytes:
    """The full HTTP response for ``path`` on http://tapproxy.ca/."""
    path = path.split(b"?", 1)[0]
    if path in (b"/", b"/index.html"):
        return page(ca)
    if path.startswith(b"/cert/"):
        fmt = path[len(b"/cert/") :].decode("ascii", "replace")
        if fmt in _FORMATS:
            ctype, name = _FORMATS[fmt]
            disposition = b'Content-Disposition: attachment; filename="%s"\r\n' % name.encode()
            return _response(200, ctype, ca.export(fmt), disposition)  # type: ignore[arg-type]
    return _response(404, "text/plain; charset=utf-8", b"not found: try http://tapproxy.ca/\n")
