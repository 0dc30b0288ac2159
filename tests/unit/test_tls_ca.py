"""The local CA: files, permissions, certificate profile, loading errors and the CLI."""

from __future__ import annotations

import io
import os
import re
import stat
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.serialization import pkcs12

from proxy.cli.ca_cmd import main as ca_main
from proxy.tls.ca import (
    CA_CERT_DER,
    CA_CERT_P12,
    CA_CERT_PEM,
    CA_KEY_PEM,
    CAError,
    CertificateAuthority,
    default_certs_dir,
)

posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def ca_dir(tmp_path: Path) -> Path:
    return tmp_path / "nested" / "certs"


@pytest.fixture
def ca(ca_dir: Path) -> CertificateAuthority:
    return CertificateAuthority.load_or_create(ca_dir)


# -- creation and files --------------------------------------------------------


def test_creates_the_four_files_and_nothing_else(ca: CertificateAuthority, ca_dir: Path) -> None:
    assert sorted(p.name for p in ca_dir.iterdir()) == sorted(
        [CA_CERT_PEM, CA_CERT_DER, CA_CERT_P12, CA_KEY_PEM]
    )


@posix_only
def test_key_is_0600_and_new_dir_is_0700(ca: CertificateAuthority, ca_dir: Path) -> None:
    assert _mode(ca_dir / CA_KEY_PEM) == 0o600
    assert _mode(ca_dir) == 0o700


@posix_only
def test_key_is_0600_even_with_a_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        CertificateAuthority.load_or_create(tmp_path / "c")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "c" / CA_KEY_PEM) == 0o600
    assert _mode(tmp_path / "c") == 0o700


@posix_only
def test_existing_directory_mode_is_left_alone(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    CertificateAuthority.load_or_create(tmp_path)
    assert _mode(tmp_path) == 0o755


def test_load_or_create_twice_loads_the_same_ca(ca: CertificateAuthority, ca_dir: Path) -> None:
    again = CertificateAuthority.load_or_create(ca_dir)
    assert again.fingerprint() == ca.fingerprint()
    assert again.cert == ca.cert


def test_create_refuses_to_overwrite_an_existing_key(
    ca: CertificateAuthority, ca_dir: Path
) -> None:
    with pytest.raises(FileExistsError):
        CertificateAuthority.create(ca_dir)
    assert CertificateAuthority.load(ca_dir).fingerprint() == ca.fingerprint()
    assert not [p for p in ca_dir.iterdir() if p.name.endswith(".tmp")]


def test_load_or_create_waits_for_a_certificate_being_written(
    ca: CertificateAuthority, ca_dir: Path
) -> None:
    pem = (ca_dir / CA_CERT_PEM).read_bytes()
    (ca_dir / CA_CERT_PEM).unlink()
    timer = threading.Timer(0.1, (ca_dir / CA_CERT_PEM).write_bytes, [pem])
    timer.start()
    try:
        assert CertificateAuthority.load_or_create(ca_dir).fingerprint() == ca.fingerprint()
    finally:
        timer.join()


def test_concurrent_first_use_agrees_on_one_ca(tmp_path: Path) -> None:
    results: list[str] = []
    barrier = threading.Barrier(4)

    def start() -> None:
        barrier.wait()
        results.append(CertificateAuthority.load_or_create(tmp_path / "race").fingerprint())

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4 and len(set(results)) == 1
    assert CertificateAuthority.load(tmp_path / "race").fingerprint() == results[0]


def test_missing_derived_files_are_recreated(ca: CertificateAuthority, ca_dir: Path) -> None:
    (ca_dir / CA_CERT_DER).unlink()
    (ca_dir / CA_CERT_P12).unlink()
    CertificateAuthority.load(ca_dir)
    assert (ca_dir / CA_CERT_DER).read_bytes() == ca.export("der")
    assert (ca_dir / CA_CERT_P12).exists()


# -- certificate profile -----------------------------------------------------


def test_ca_certificate_profile(ca: CertificateAuthority) -> None:
    cert = ca.cert
    assert isinstance(ca.key, ec.EllipticCurvePrivateKey)
    assert ca.key.curve.name == "secp256r1"
    assert cert.subject == cert.issuer
    (cn,) = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    assert re.fullmatch(r"tapproxy CA [0-9a-f]{8}", str(cn.value))
    (org,) = cert.subject.get_attributes_for_oid(x509.NameOID.ORGANIZATION_NAME)
    assert org.value == "tapproxy"
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length == 0
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical
    assert ku.value.key_cert_sign and ku.value.crl_sign and ku.value.digital_signature
    ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert ski == x509.SubjectKeyIdentifier.from_public_key(ca.key.public_key())
    assert isinstance(cert.signature_hash_algorithm, hashes.SHA256)
    now = datetime.now(UTC)
    assert timedelta(days=1) < now - cert.not_valid_before_utc <= timedelta(days=2, minutes=1)
    assert timedelta(days=3649) < cert.not_valid_after_utc - now <= timedelta(days=3650)


def test_two_cas_have_different_subjects(tmp_path: Path) -> None:
    a = CertificateAuthority.load_or_create(tmp_path / "a")
    b = CertificateAuthority.load_or_create(tmp_path / "b")
    assert a.cert.subject != b.cert.subject
    assert a.cert.serial_number != b.cert.serial_number


# -- export --------------------------------------------------------------------


def test_exports_parse_back_and_match_the_files(ca: CertificateAuthority, ca_dir: Path) -> None:
    pem, der, p12 = ca.export("pem"), ca.export("der"), ca.export("p12")
    assert x509.load_pem_x509_certificate(pem) == ca.cert
    assert x509.load_der_x509_certificate(der) == ca.cert
    bundle = pkcs12.load_pkcs12(p12, None)
    assert bundle.key is None
    certs = [c.certificate for c in bundle.additional_certs]
    if bundle.cert is not None:
        certs.append(bundle.cert.certificate)
    assert certs == [ca.cert]
    assert (ca_dir / CA_CERT_PEM).read_bytes() == pem
    assert (ca_dir / CA_CERT_DER).read_bytes() == der
    assert pkcs12.load_pkcs12((ca_dir / CA_CERT_P12).read_bytes(), None).key is None


@pytest.mark.parametrize("name", [CA_CERT_PEM, CA_CERT_DER, CA_CERT_P12])
def test_public_files_contain_no_private_key(
    ca: CertificateAuthority, ca_dir: Path, name: str
) -> None:
    data = (ca_dir / name).read_bytes()
    assert b"PRIVATE KEY" not in data
    assert isinstance(ca.key, ec.EllipticCurvePrivateKey)
    scalar = ca.key.private_numbers().private_value.to_bytes(32, "big")
    assert scalar not in data


def test_export_rejects_unknown_format(ca: CertificateAuthority) -> None:
    with pytest.raises(ValueError, match="unknown export format"):
        ca.export("jks")  # type: ignore[arg-type]


def test_regenerate_replaces_the_files(ca: CertificateAuthority, ca_dir: Path) -> None:
    new = ca.regenerate()
    assert new.fingerprint() != ca.fingerprint()
    assert CertificateAuthority.load(ca_dir).fingerprint() == new.fingerprint()
    assert (ca_dir / CA_CERT_DER).read_bytes() == new.export("der")
    if os.name == "posix":
        assert _mode(ca_dir / CA_KEY_PEM) == 0o600


# -- loading errors ------------------------------------------------------------


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def test_mismatched_key_is_a_clear_error(ca: CertificateAuthority, ca_dir: Path) -> None:
    _write_key(ca_dir / CA_KEY_PEM, ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(CAError, match="does not match"):
        CertificateAuthority.load_or_create(ca_dir)


@pytest.mark.parametrize("missing", [CA_CERT_PEM, CA_KEY_PEM])
def test_incomplete_ca_is_an_error_not_a_silent_replacement(
    ca: CertificateAuthority, ca_dir: Path, missing: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("proxy.tls.ca.CREATION_GRACE", 0.05)
    (ca_dir / missing).unlink()
    with pytest.raises(CAError, match=f"incomplete CA.*{re.escape(missing)}"):
        CertificateAuthority.load_or_create(ca_dir)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        (CA_KEY_PEM, b"not a key", "cannot read CA key"),
        (CA_CERT_PEM, b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "cert"),
    ],
)
def test_unreadable_files(
    ca: CertificateAuthority, ca_dir: Path, name: str, content: bytes, message: str
) -> None:
    (ca_dir / name).write_bytes(content)
    with pytest.raises(CAError, match=message):
        CertificateAuthority.load(ca_dir)


def test_encrypted_key_is_refused(ca: CertificateAuthority, ca_dir: Path) -> None:
    (ca_dir / CA_KEY_PEM).write_bytes(
        ca.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    with pytest.raises(CAError, match="cannot read CA key"):
        CertificateAuthority.load(ca_dir)


def _self_signed(
    key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey,
    *,
    ca: bool = True,
    days: int = 10,
    start: datetime | None = None,
) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "custom")])
    start = start or datetime.now(UTC) - timedelta(days=1)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(key, algorithm)


@pytest.mark.parametrize(
    ("make_key", "cert_kwargs", "message"),
    [
        (lambda: ec.generate_private_key(ec.SECP256R1()), {"ca": False}, "not a CA"),
        (
            lambda: ec.generate_private_key(ec.SECP256R1()),
            {"start": datetime.now(UTC) - timedelta(days=30)},
            "expired",
        ),
        (ed25519.Ed25519PrivateKey.generate, {}, "unsupported CA key type"),
    ],
)
def test_bad_custom_ca_is_refused(
    tmp_path: Path, make_key: object, cert_kwargs: dict[str, object], message: str
) -> None:
    key = make_key()  # type: ignore[operator]
    (tmp_path / CA_CERT_PEM).write_bytes(
        _self_signed(key, **cert_kwargs).public_bytes(serialization.Encoding.PEM)  # type: ignore[arg-type]
    )
    _write_key(tmp_path / CA_KEY_PEM, key)
    with pytest.raises(CAError, match=message):
        CertificateAuthority.load(tmp_path)


def test_custom_ca_without_extensions_we_add_still_loads(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / CA_CERT_PEM).write_bytes(_self_signed(key).public_bytes(serialization.Encoding.PEM))
    _write_key(tmp_path / CA_KEY_PEM, key)
    ca = CertificateAuthority.load(tmp_path)
    assert (tmp_path / CA_CERT_DER).exists()
    assert ca.export("pem") == (tmp_path / CA_CERT_PEM).read_bytes()


# -- default_certs_dir ---------------------------------------------------------

_PYPROJECT = '[project]\nname = "tapproxy"\nversion = "0"\n'


@pytest.mark.parametrize(
    ("env", "checkout", "platform", "expected"),
    [
        ({"TAPPROXY_CERTS": "/opt/ca"}, True, "linux", "/opt/ca"),
        ({"TAPPROXY_CERTS": ""}, True, "linux", "<cwd>/certs"),
        ({}, True, "linux", "<cwd>/certs"),
        ({}, True, "win32", "<cwd>/certs"),
        ({"XDG_CONFIG_HOME": "/xdg"}, False, "linux", "/xdg/tapproxy"),
        ({"XDG_CONFIG_HOME": "relative"}, False, "linux", "<home>/.config/tapproxy"),
        ({}, False, "darwin", "<home>/.config/tapproxy"),
        ({"APPDATA": "/appdata"}, False, "win32", "/appdata/tapproxy"),
        ({}, False, "win32", "<home>/AppData/Roaming/tapproxy"),
    ],
)
def test_default_certs_dir(
    tmp_path: Path, env: dict[str, str], checkout: bool, platform: str, expected: str
) -> None:
    if checkout:
        (tmp_path / "pyproject.toml").write_text(_PYPROJECT)
        (tmp_path / "proxy").mkdir()
    got = default_certs_dir(env=env, cwd=tmp_path, platform=platform)
    want = expected.replace("<cwd>", str(tmp_path)).replace("<home>", str(Path.home()))
    assert got == Path(want)


@pytest.mark.parametrize(
    ("pyproject", "has_proxy_dir"),
    [
        ('[project]\nname = "other"\n', True),
        (_PYPROJECT, False),
        ("not [valid toml", True),
        (None, True),
    ],
)
def test_not_a_checkout(tmp_path: Path, pyproject: str | None, has_proxy_dir: bool) -> None:
    if pyproject is not None:
        (tmp_path / "pyproject.toml").write_text(pyproject)
    if has_proxy_dir:
        (tmp_path / "proxy").mkdir()
    got = default_certs_dir(env={"XDG_CONFIG_HOME": "/x"}, cwd=tmp_path, platform="linux")
    assert got == Path("/x/tapproxy")


# -- the CLI -------------------------------------------------------------------


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_cli_path_creates_and_prints(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert ca_main(["path", "--certs", str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == str(tmp_path / CA_CERT_PEM)
    assert "created a new CA" in err
    assert ca_main(["--certs", str(tmp_path), "path", "--dir"]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == str(tmp_path) and err == ""


@pytest.mark.parametrize("fmt", ["pem", "der", "p12"])
def test_cli_export_to_stdout(
    ca: CertificateAuthority, ca_dir: Path, capsysbinary: pytest.CaptureFixture[bytes], fmt: str
) -> None:
    assert ca_main(["export", "--format", fmt, "--certs", str(ca_dir)]) == 0
    out, _ = capsysbinary.readouterr()
    assert b"PRIVATE KEY" not in out
    if fmt == "p12":  # PKCS#12 carries a random MAC salt: compare the content
        bundle = pkcs12.load_pkcs12(out, None)
        assert bundle.key is None
        assert [c.certificate for c in bundle.additional_certs] == [ca.cert]
    else:
        assert out == ca.export(fmt)  # type: ignore[arg-type]


def test_cli_export_refuses_binary_to_a_terminal(
    ca: CertificateAuthority, ca_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class TtyOut(io.TextIOWrapper):
        def isatty(self) -> bool:
            return True

    out = TtyOut(io.BytesIO())
    monkeypatch.setattr("sys.stdout", out)
    assert ca_main(["export", "--format", "der", "--certs", str(ca_dir)]) == 2
    assert ca_main(["export", "--format", "pem", "--certs", str(ca_dir)]) == 0
    out.flush()
    assert out.buffer.getvalue() == ca.export("pem")  # type: ignore[attr-defined]


def test_cli_export_to_file(ca: CertificateAuthority, ca_dir: Path, tmp_path: Path) -> None:
    target = tmp_path / "out.cer"
    assert ca_main(["export", "--certs", str(ca_dir), "--format", "der", "-o", str(target)]) == 0
    assert x509.load_der_x509_certificate(target.read_bytes()) == ca.cert


def test_cli_regenerate_with_yes(ca: CertificateAuthority, ca_dir: Path) -> None:
    assert ca_main(["regenerate", "--yes", "--certs", str(ca_dir)]) == 0
    assert CertificateAuthority.load(ca_dir).fingerprint() != ca.fingerprint()


@pytest.mark.parametrize(
    ("stdin", "code", "replaced"),
    [
        (io.StringIO("y\n"), 2, False),  # not a tty: refuse, never read
        (_Tty("n\n"), 2, False),
        (_Tty("\n"), 2, False),
        (_Tty("y\n"), 0, True),
        (_Tty("YES\n"), 0, True),
    ],
)
def test_cli_regenerate_asks(
    ca: CertificateAuthority,
    ca_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    stdin: io.StringIO,
    code: int,
    replaced: bool,
) -> None:
    monkeypatch.setattr("sys.stdin", stdin)
    assert ca_main(["regenerate", "--certs", str(ca_dir)]) == code
    changed = CertificateAuthority.load(ca_dir).fingerprint() != ca.fingerprint()
    assert changed is replaced


def test_cli_regenerate_repairs_a_broken_ca(ca: CertificateAuthority, ca_dir: Path) -> None:
    _write_key(ca_dir / CA_KEY_PEM, ec.generate_private_key(ec.SECP256R1()))
    assert ca_main(["path", "--certs", str(ca_dir)]) == 1
    assert ca_main(["regenerate", "--yes", "--certs", str(ca_dir)]) == 0
    CertificateAuthority.load(ca_dir)


@pytest.mark.parametrize(
    ("argv", "code"),
    [
        ([], 2),
        (["--help"], 0),
        (["export", "--format", "jks"], 2),
        (["frobnicate"], 2),
    ],
)
def test_cli_usage(argv: list[str], code: int, capsys: pytest.CaptureFixture[str]) -> None:
    assert ca_main(argv) == code
