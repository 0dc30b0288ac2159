"""``map_local``: answer from a file, or from a folder mapped by request path.

This is the one place the rule engine looks at the file system at request
time (files change while the proxy runs): it checks that the file exists
and picks its content type; the IO layer streams it. A path that would
leave the folder (``..``, an encoded ``%2e%2e``, a symlink pointing out)
is refused with 403 whatever the ``missing`` setting says.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path
from urllib.parse import unquote

from proxy.http1.events import Fields
from proxy.rules.model import MapLocalSpec
from proxy.rules.plans import Respond

TEXT = ((b"content-type", b"text/plain; charset=utf-8"),)


def resolve_map_local(spec: MapLocalSpec, path: str, rule: str) -> tuple[Respond | None, str]:
    """The response to serve (``None``: go upstream) and a note for the flow log."""
    try:
        return _resolve(spec, path, rule)
    except (OSError, RuntimeError, ValueError) as e:  # name too long, symlink loop...
        return _missing(
            spec, spec.file or spec.folder or Path(), rule, f" ({e.__class__.__name__})"
        )


def _resolve(spec: MapLocalSpec, path: str, rule: str) -> tuple[Respond | None, str]:
    if spec.file is not None:
        return (
            _serve(spec, spec.file, rule)
            if spec.file.is_file()
            else _missing(spec, spec.file, rule)
        )
    assert spec.folder is not None
    rel = unquote(path)
    if spec.strip_prefix and (rel == spec.strip_prefix or rel.startswith(spec.strip_prefix + "/")):
        rel = rel[len(spec.strip_prefix) :]
    rel = rel.lstrip("/")
    if rel == "" or rel.endswith("/"):
        rel += spec.index
    if "\x00" in rel or "\\" in rel:
        return _refuse(rule, rel)
    target = (spec.folder / rel).resolve()
    if not target.is_relative_to(spec.folder):
        return _refuse(rule, rel)
    if target.is_dir():
        target = target / spec.index
    return _serve(spec, target, rule) if target.is_file() else _missing(spec, target, rule)


def content_type(file: Path) -> bytes:
    guessed, _ = mimetypes.guess_type(file.name)
    return (guessed or "application/octet-stream").encode()


def _serve(spec: MapLocalSpec, file: Path, rule: str) -> tuple[Respond, str]:
    fields: Fields = ((b"content-type", content_type(file)), *spec.fields)
    return Respond(200, fields, b"", file, "map_local", rule), f"map_local {file}"


def _missing(
    spec: MapLocalSpec, file: Path, rule: str, why: str = ""
) -> tuple[Respond | None, str]:
    if spec.fallthrough:
        return None, f"map_local: {file} not found{why}, going upstream"
    note = f"map_local: {file} not found{why}"
    return Respond(404, TEXT, b"not found\n", None, "map_local", rule), note


def _refuse(rule: str, rel: str) -> tuple[Respond, str]:
    note = f"map_local: path {rel!r} leaves the folder, refused"
    return Respond(403, TEXT, b"forbidden\n", None, "map_local", rule), note
