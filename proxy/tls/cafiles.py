"""The CA directory on disk: creating it privately, writing files atomically,
and saying in words what is wrong with it.

A CA directory problem is a setup problem the user fixes by pointing
``--certs`` elsewhere or fixing permissions; the message names the
certificate directory, the path, the reason and the option, never a raw
``[Errno 13]`` about a temporary file.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from proxy.oserrors import reason

__all__ = ["dir_problem", "make_private_dir", "not_a_directory", "write_file"]

_HINT = "choose a writable directory with --certs DIR (or $TAPPROXY_CERTS)"


def dir_problem(directory: Path, doing: str, e: OSError) -> str:
    """The message for ``e`` raised while ``doing`` something in ``directory``."""
    return f"certificate directory {directory}: cannot {doing}: {reason(e)}; {_HINT}"


def not_a_directory(directory: Path) -> str | None:
    """A message if ``directory`` (or a parent) exists but is not a directory."""
    for path in (directory, *directory.parents):
        if path.exists() or path.is_symlink():
            if path.is_dir():
                return None
            where = "it is" if path == directory else f"its parent {path} is"
            return f"certificate directory {directory}: {where} a file, not a directory; {_HINT}"
    return None


def make_private_dir(directory: Path) -> None:
    """Create ``directory`` (and parents) with mode 0700 if it does not exist."""
    if directory.is_dir():
        return
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    if os.name == "posix":
        # mkdir's mode is filtered by the umask; make the intent exact.
        directory.chmod(0o700)


def write_file(path: Path, data: bytes, *, mode: int, exclusive: bool = False) -> None:
    """Write ``data`` to a fresh temp file created with ``mode``, then move it to ``path``.

    ``path`` is never seen half-written or with wider permissions than
    ``mode``. With ``exclusive`` the final step is ``os.link``, which fails
    with ``FileExistsError`` if ``path`` exists: our create-once lock.
    """
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    fd = os.open(tmp, flags, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if not exclusive:
            os.replace(tmp, path)
            return
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise
        except OSError as e:
            if path.exists():
                raise FileExistsError(str(path)) from e
            # No hard links here (some Windows or network filesystems): fall
            # back to rename, which is atomic but not exclusive.
            os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
