"""The local certificate authority that signs tapproxy's leaf certificates.

A CA lives in one directory as four files:

``tapproxy-ca.pem``
    The CA certificate, PEM. This is the file clients are told to trust.
``tapproxy-ca.cer``
    The same certificate, DER (what Windows and Android import by double-click).
``tapproxy-ca.p12``
    PKCS#12 holding the certificate only, never the key (for tools that only
    import ``.p12``).
``tapproxy-ca-key.pem``
    The private key, PKCS#8 PEM, mode 0600. It never leaves this file: nothing
    here exports it.

The key file is written atomically and is never readable by others, not even
for a moment: it is created under a temporary name with ``O_EXCL`` and mode
0600, then linked into place. Creation is safe against two processes starting
at once: the first to link the key wins and the other loads the winner's CA.
"""

from __future__ import annotations

import logging
import os
import secrets
import sys
import time
import tomllib
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from proxy.oserrors import reason
from proxy.tls.cafiles import dir_problem, make_private_dir, not_a_directory, write_file

__all__ = [
    "CA_CERT_DER",
    "CA_CERT_P12",
    "CA_CERT_PEM",
    "CA_KEY_PEM",
    "CA_VALIDITY",
    "CAError",
    "CAKey",
    "CertificateAuthority",
    "ExportFormat",
    "default_certs_dir",
]

log = logging.getLogger(__name__)

CA_CERT_PEM = "tapproxy-ca.pem"
CA_CERT_DER = "tapproxy-ca.cer"
CA_CERT_P12 = "tapproxy-ca.p12"
CA_KEY_PEM = "tapproxy-ca-key.pem"

CA_VALIDITY = timedelta(days=3650)
BACKDATE = timedelta(days=2)
#: How long to wait for the certificate of a CA another process is creating.
CREATION_GRACE = 1.0
#: Loading a CA that expires sooner than this logs a warning.
EXPIRY_WARNING = timedelta(days=30)

#: Key types we can sign with using SHA-256 (Ed25519/DSA keys are refused on load).
CAKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey

ExportFormat = Literal["pem", "der", "p12"]


class CAError(Exception):
    """The CA directory cannot be used (incomplete, mismatched, expired, unreadable)."""


def default_certs_dir(
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    platform: str | None = None,
) -> Path:
    """Where the CA lives unless ``--certs`` says otherwise.

    1. ``$TAPPROXY_CERTS`` if set and non-empty.
    2. ``./certs`` if the current directory is a tapproxy checkout (a
       ``pyproject.toml`` whose project name is ``tapproxy`` beside a
       ``proxy/`` directory), so developers keep one CA per checkout.
    3. The per-user config dir: ``%APPDATA%\\tapproxy`` on Windows, else
       ``$XDG_CONFIG_HOME/tapproxy`` (when absolute) or ``~/.config/tapproxy``.

    The parameters exist for tests; they default to the real environment.
    """
    env = os.environ if env is None else env
    cwd = Path.cwd() if cwd is None else cwd
    platform = sys.platform if platform is None else platform

    explicit = env.get("TAPPROXY_CERTS")
    if explicit:
        return Path(explicit).expanduser()
    if _is_tapproxy_checkout(cwd):
        return cwd / "certs"
    if platform == "win32":
        appdata = env.get("APPDATA")
        base = Path(appdata) if appdata else Path.home() / "AppData" / "Roaming"
        return base / "tapproxy"
    xdg = env.get("XDG_CONFIG_HOME")
    # The XDG spec says relative values are invalid and must be ignored.
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".config"
    return base / "tapproxy"


def _is_tapproxy_checkout(directory: Path) -> bool:
    if not (directory / "proxy").is_dir():
        return False
    try:
        with (directory / "pyproject.toml").open("rb") as f:
            data = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError):
        return False
    project = data.get("project")
    return isinstance(project, dict) and project.get("name") == "tapproxy"


class CertificateAuthority:
    """A loaded CA: its certificate, its signing key and the directory they live in.

    Instances are immutable; :meth:`regenerate` returns a new one. Use
    :meth:`load_or_create` rather than the constructor.
    """

    __slots__ = ("_cert", "_cert_pem", "_directory", "_key")

    def __init__(self, directory: Path, cert: x509.Certificate, key: CAKey) -> None:
        _check_pair(cert, key, directory)
        self._directory = directory
        self._cert = cert
        self._key = key
        self._cert_pem = cert.public_bytes(serialization.Encoding.PEM)

    # -- construction ---------------------------------------------------------

    @classmethod
    def load_or_create(cls, directory: Path) -> CertificateAuthority:
        """Load the CA in ``directory``, creating the directory and a new CA if absent.

        An incomplete CA (key without certificate or the reverse) is an error,
        not something we silently replace: clients may already trust it.
        """
        directory = Path(directory)
        if (problem := not_a_directory(directory)) is not None:
            raise CAError(problem)
        cert_path, key_path = directory / CA_CERT_PEM, directory / CA_KEY_PEM
        if not cert_path.exists() and not key_path.exists():
            try:
                return cls.create(directory)
            except FileExistsError:
                pass  # another process linked its key first; load its CA
            except OSError as e:
                doing = "create it" if not directory.is_dir() else "write a new CA in it"
                raise CAError(dir_problem(directory, doing, e)) from e
        if key_path.exists() and not cert_path.exists():
            # The key is written first: a process creating the CA right now
            # writes the certificate within milliseconds, perhaps not atomically,
            # so a load that fails is retried until the grace period is over.
            deadline = time.monotonic() + CREATION_GRACE
            while True:
                try:
                    return cls.load(directory)
                except CAError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
        return cls.load(directory)

    @classmethod
    def load(cls, directory: Path) -> CertificateAuthority:
        """Load an existing CA, checking that key and certificate belong together."""
        directory = Path(directory)
        cert_path, key_path = directory / CA_CERT_PEM, directory / CA_KEY_PEM
        missing = [p.name for p in (cert_path, key_path) if not p.exists()]
        if missing:
            raise CAError(
                f"incomplete CA in {directory}: missing {', '.join(missing)}; "
                "run `tapproxy ca regenerate` to make a new one"
            )
        try:
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        except (OSError, ValueError) as e:
            raise CAError(f"cannot read CA certificate {cert_path}: {_why(e)}") from e
        try:
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        except (OSError, ValueError, TypeError) as e:
            # TypeError: the key is encrypted (we do not support passphrases).
            raise CAError(f"cannot read CA key {key_path}: {_why(e)}") from e
        if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
            raise CAError(
                f"unsupported CA key type in {key_path}: {type(key).__name__} (use EC or RSA)"
            )
        _warn_if_exposed(key_path)
        ca = cls(directory, cert, key)
        try:
            ca._write_public_files(only_missing=True)
        except OSError as e:
            # A read-only CA directory is fine for running; only the derived
            # .cer/.p12 copies are missing.
            log.warning("cannot write derived CA files in %s: %s", directory, reason(e))
        return ca

    @classmethod
    def create(
        cls, directory: Path, *, validity: timedelta = CA_VALIDITY, overwrite: bool = False
    ) -> CertificateAuthority:
        """Generate a new CA and write its files.

        Raises ``FileExistsError`` if a key is already there and ``overwrite``
        is false. ``validity`` exists so tests can make short-lived CAs.
        """
        directory = Path(directory)
        make_private_dir(directory)
        key, cert = _generate(validity)
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        write_file(directory / CA_KEY_PEM, key_pem, mode=0o600, exclusive=not overwrite)
        ca = cls(directory, cert, key)
        ca._write_public_files(only_missing=False)
        return ca

    def regenerate(self) -> CertificateAuthority:
        """Replace this CA's files with a brand-new CA and return it.

        Every client that trusted the old CA must be told to trust the new one.
        """
        return type(self).create(self._directory, overwrite=True)

    # -- accessors ------------------------------------------------------------

    @property
    def directory(self) -> Path:
        return self._directory

    @property
    def cert(self) -> x509.Certificate:
        return self._cert

    @property
    def key(self) -> CAKey:
        """The signing key. For :mod:`proxy.tls.leaf` only; never export it."""
        return self._key

    @property
    def cert_pem(self) -> bytes:
        return self._cert_pem

    @property
    def cert_path(self) -> Path:
        return self._directory / CA_CERT_PEM

    @property
    def not_after(self) -> datetime:
        return self._cert.not_valid_after_utc

    def fingerprint(self) -> str:
        """SHA-256 fingerprint as colon-separated hex, the form browsers display."""
        return self._cert.fingerprint(hashes.SHA256()).hex(":").upper()

    def export(self, fmt: ExportFormat) -> bytes:
        """The CA certificate (never the key) in ``pem``, ``der`` or ``p12`` form."""
        if fmt == "pem":
            return self._cert_pem
        if fmt == "der":
            return self._cert.public_bytes(serialization.Encoding.DER)
        if fmt == "p12":
            return pkcs12.serialize_key_and_certificates(
                name=b"tapproxy CA",
                key=None,
                cert=self._cert,
                cas=None,
                encryption_algorithm=serialization.NoEncryption(),
            )
        raise ValueError(f"unknown export format {fmt!r}")

    def __repr__(self) -> str:
        return f"<CertificateAuthority {self._cert.subject.rfc4514_string()} in {self._directory}>"

    # -- internals ------------------------------------------------------------

    def _write_public_files(self, *, only_missing: bool) -> None:
        files: tuple[tuple[str, ExportFormat], ...] = (
            (CA_CERT_P12, "p12"),
            (CA_CERT_DER, "der"),
            (CA_CERT_PEM, "pem"),
        )
        for name, fmt in files:
            # PEM last: its presence is what marks the CA as complete.
            path = self._directory / name
            if only_missing and path.exists():
                continue
            write_file(path, self.export(fmt), mode=0o644)


def _generate(validity: timedelta) -> tuple[CAKey, x509.Certificate]:
    # EC P-256: generating it takes ~1 ms (RSA-2048: tens to hundreds), each
    # leaf signature is ~0.1 ms, and every TLS stack we care about (browsers,
    # Android 4+, iOS, Windows, Java 7+, OpenSSL, Go, Node) accepts ECDSA roots.
    # The leaf key type is chosen separately in proxy.tls.leaf.
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            # A random suffix so two installs never produce the same subject;
            # trust stores that index by subject would otherwise confuse them.
            x509.NameAttribute(NameOID.COMMON_NAME, f"tapproxy CA {secrets.token_hex(4)}"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "tapproxy"),
        ]
    )
    now = datetime.now(UTC)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + validity)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _check_pair(cert: x509.Certificate, key: CAKey, directory: Path) -> None:
    """Refuse a CA whose key does not match, that is not a CA, or has expired."""
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    if cert.public_key().public_bytes(der, spki) != key.public_key().public_bytes(der, spki):
        raise CAError(
            f"{CA_KEY_PEM} does not match {CA_CERT_PEM} in {directory}: the files come "
            "from different CAs; restore the right pair or run `tapproxy ca regenerate`"
        )
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        bc = None
    if bc is None or not bc.ca:
        raise CAError(f"{CA_CERT_PEM} in {directory} is not a CA certificate")
    now = datetime.now(UTC)
    if cert.not_valid_after_utc <= now:
        raise CAError(
            f"the CA in {directory} expired on {cert.not_valid_after_utc:%Y-%m-%d}; "
            "run `tapproxy ca regenerate` and trust the new CA"
        )
    if cert.not_valid_after_utc - now < EXPIRY_WARNING:
        log.warning(
            "the CA in %s expires on %s; regenerate it soon",
            directory,
            f"{cert.not_valid_after_utc:%Y-%m-%d}",
        )


def _warn_if_exposed(key_path: Path) -> None:
    if os.name != "posix":
        return
    mode = key_path.stat().st_mode & 0o777
    if mode & 0o077:
        log.warning("CA key %s is readable by others (mode %o); chmod 600 it", key_path, mode)


def _why(e: Exception) -> str:
    """An OS error in words; a parse error as the library says it."""
    return reason(e) if isinstance(e, OSError) else str(e)
