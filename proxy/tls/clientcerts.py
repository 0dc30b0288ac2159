"""Client certificates for upstream mutual TLS (``--client-certs FILE|DIR``).

A FILE is one PEM holding a certificate (and its chain) and the private key,
presented to every upstream that asks. A DIR holds one such PEM per host,
named ``HOST.pem`` after the name sent as SNI (``api.internal.pem``); a
host without a file gets no certificate. Each file becomes its own client
context (the shared upstream settings, plus the certificate), built once
and kept. Every file is loaded and checked at startup, so a wrong path, a
missing key or a key that does not match its certificate is reported then.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from OpenSSL import SSL

from proxy.tls.endpoint import describe_ssl_error


class ClientCertError(ValueError):
    pass


class ClientCerts:
    """Chooses the client context for an upstream by its SNI."""

    __slots__ = ("_contexts", "_single", "path")

    def __init__(self, path: Path, base: Callable[[], SSL.Context]) -> None:
        self.path = path
        self._single: SSL.Context | None = None
        self._contexts: dict[str, SSL.Context] = {}
        if path.is_dir():
            for pem in sorted(path.glob("*.pem")):
                self._contexts[pem.name[: -len(".pem")].lower()] = _load(pem, base())
            if not self._contexts:
                raise ClientCertError(f"--client-certs {path}: no HOST.pem files in it")
        elif path.is_file():
            self._single = _load(path, base())
        else:
            raise ClientCertError(f"--client-certs {path}: no such file or directory")

    def context_for(self, sni: str) -> SSL.Context | None:
        """The context presenting a certificate to ``sni``; None: that host gets none."""
        if self._single is not None:
            return self._single
        return self._contexts.get(sni.rstrip(".").lower())

    def describe(self, sni: str) -> str:
        """Where a certificate for ``sni`` would come from (for error messages)."""
        if self._single is not None:
            return f"--client-certs {self.path}"
        return f"--client-certs {self.path / (sni.lower() + '.pem')}"


def _load(pem: Path, context: SSL.Context) -> SSL.Context:
    try:
        context.use_certificate_chain_file(str(pem))
        context.use_privatekey_file(str(pem))
        context.check_privatekey()
    except SSL.Error as e:
        raise ClientCertError(
            f"--client-certs {pem}: needs a PEM certificate and its private key "
            f"({describe_ssl_error(e)})"
        ) from None
    return context
