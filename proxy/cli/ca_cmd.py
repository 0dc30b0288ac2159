"""``tapproxy ca ...``: show, export and regenerate the local CA.

``path``        print the CA certificate's path (creating the CA if needed)
``export``      write the certificate as PEM, DER or PKCS#12 to stdout or a file
``regenerate``  replace the CA, after a y/N question unless ``--yes``

Only the certificate ever leaves the CA directory; no subcommand reads out
the private key. Exit status: 0 success, 1 CA or file error, 2 usage error or
refusal.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import cast

from proxy.oserrors import reason
from proxy.tls.ca import (
    CA_CERT_PEM,
    CA_KEY_PEM,
    CAError,
    CertificateAuthority,
    ExportFormat,
    default_certs_dir,
)
from proxy.tls.cafiles import dir_problem

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    certs = argparse.ArgumentParser(add_help=False)
    certs.add_argument(
        "--certs",
        metavar="DIR",
        type=Path,
        default=argparse.SUPPRESS,
        help="CA directory (default: $TAPPROXY_CERTS, ./certs in a checkout, else per-user)",
    )
    parser = argparse.ArgumentParser(
        prog="tapproxy ca", description="Manage tapproxy's local certificate authority."
    )
    parser.add_argument("--certs", metavar="DIR", type=Path, default=None, help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    path = sub.add_parser(
        "path", parents=[certs], help="print the CA certificate path (creates the CA if missing)"
    )
    path.add_argument("--dir", action="store_true", help="print the CA directory instead")
    export = sub.add_parser("export", parents=[certs], help="export the CA certificate")
    export.add_argument("--format", choices=("pem", "der", "p12"), default="pem")
    export.add_argument("-o", "--output", metavar="FILE", help="write here instead of stdout")
    regen = sub.add_parser(
        "regenerate", parents=[certs], help="replace the CA with a new one (asks first)"
    )
    regen.add_argument("--yes", action="store_true", help="do not ask before overwriting")
    return parser


def main(argv: list[str]) -> int:
    """Run ``tapproxy ca`` with ``argv`` (the words after ``ca``); return the exit status."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as e:  # argparse exits on --help and on usage errors
        return e.code if isinstance(e.code, int) else 2
    directory: Path = args.certs if args.certs is not None else default_certs_dir()
    try:
        if args.command == "path":
            return _path(directory, show_dir=args.dir)
        if args.command == "export":
            return _export(directory, cast(ExportFormat, args.format), args.output)
        return _regenerate(directory, assume_yes=args.yes)
    except CAError as e:
        _err(f"error: {e}")
        return 1
    except OSError as e:
        _err(f"error: {e.filename or directory}: {reason(e)}")
        return 1


def _err(message: str) -> None:
    print(message, file=sys.stderr)


def _load(directory: Path) -> CertificateAuthority:
    existed = (directory / CA_CERT_PEM).exists()
    ca = CertificateAuthority.load_or_create(directory)
    if not existed:
        _err(f"created a new CA in {directory} (SHA-256 {ca.fingerprint()})")
    return ca


def _path(directory: Path, *, show_dir: bool) -> int:
    ca = _load(directory)
    print(ca.directory if show_dir else ca.cert_path)
    return 0


def _export(directory: Path, fmt: ExportFormat, output: str | None) -> int:
    data = _load(directory).export(fmt)
    if output is None or output == "-":
        if fmt != "pem" and sys.stdout.isatty():
            _err(f"refusing to write binary {fmt} to a terminal; use -o FILE or a pipe")
            return 2
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        try:
            Path(output).write_bytes(data)
        except OSError as e:
            _err(f"error: -o {output}: cannot write it: {reason(e)}")
            return 1
        _err(f"wrote {fmt} CA certificate to {output}")
    return 0


def _regenerate(directory: Path, *, assume_yes: bool) -> int:
    exists = any((directory / name).exists() for name in (CA_CERT_PEM, CA_KEY_PEM))
    if exists and not assume_yes:
        if not sys.stdin.isatty():
            _err("refusing to replace the CA without a terminal to ask on; pass --yes")
            return 2
        prompt = (
            f"Replace the CA in {directory}? Every client that trusts the current CA "
            "will have to trust the new one. [y/N] "
        )
        print(prompt, end="", file=sys.stderr, flush=True)
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            _err("kept the current CA")
            return 2
    # Not CertificateAuthority.regenerate(): the current files may be the
    # broken pair the user is trying to get rid of.
    try:
        ca = CertificateAuthority.create(directory, overwrite=True)
    except OSError as e:
        raise CAError(dir_problem(directory, "write a new CA in it", e)) from e
    _err(f"new CA {ca.cert.subject.rfc4514_string()} (SHA-256 {ca.fingerprint()})")
    print(ca.cert_path)
    return 0
