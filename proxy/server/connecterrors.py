"""Why a server connection could not be used, in words for 502 bodies and records.

``describe_error`` turns what a connect raised into a short cause; a TLS
alert by which a server refuses a missing or unwanted client certificate is
named with a hint (``--client-certs``). ``late_handshake_error``: in TLS 1.3
a server judges our certificate after the handshake is done on our side,
so its refusal arrives as the first record after it; we count that as the
handshake failing.
"""

from __future__ import annotations

import re
import socket

from proxy.tls.endpoint import TlsError, TlsHandshakeError, TlsVerifyError


def late_handshake_error(e: TlsError) -> TlsHandshakeError:
    """A fatal alert before the server's first byte, after our side of the
    handshake completed: in TLS 1.3 the server checks our certificate after
    its Finished (RFC 8446 §4.4.2.4), so a missing or refused client
    certificate shows up here, as alert ``certificate_required`` (116) or
    ``bad_certificate``."""
    text = str(e)
    m = re.search(r"(?:tlsv1|sslv3|tlsv13|ssl/tls|tls) alert ([a-z ]+)", text)
    alert = m.group(1).strip().replace(" ", "_") if m else None
    return TlsHandshakeError(text, alert)


# Alerts by which a server refuses our (missing) client certificate (RFC 8446 §6.2).
CLIENT_CERT_ALERTS = {
    "certificate_required": "the server requires a client certificate (--client-certs)",
    "handshake_failure": "a server that requires a client certificate may say this too",
    "bad_certificate": "the server refused our client certificate",
    "unknown_ca": "the server does not trust our client certificate's issuer",
}


def describe_error(exc: BaseException) -> str:
    """A short, human cause for a failed connect (shown in 502 bodies)."""
    if isinstance(exc, socket.gaierror):
        return f"name not resolved ({exc.strerror})"
    if isinstance(exc, TlsVerifyError):
        return f"certificate verification failed: {exc}"
    if isinstance(exc, TlsHandshakeError):
        hint = CLIENT_CERT_ALERTS.get(exc.alert or "")
        alert = f" (alert {exc.alert}: {hint})" if hint else ""
        return f"TLS handshake failed: {exc}{alert}"
    if isinstance(exc, UnicodeError):
        return "the host name cannot be encoded (IDNA)"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionResetError):
        return "connection reset"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc) or type(exc).__name__
