"""Size-based rotation for the flow log (``--flow-log-max-size``, ``--flow-log-keep``).

``RotatingFile`` appends whole lines: before a line that would take the
current file past ``max_size`` it renames ``path`` to ``path.1`` (shifting
``.1`` to ``.2`` ... and dropping what would go past ``keep``) and starts a
new file, so a record is never split across files. A line larger than
``max_size`` gets a file of its own rather than being cut.

Writes go straight to the OS (no Python buffer; the caller hands whole
batches), so after an error the exact size on disk is known: if a line was
cut short (disk full), the next write starts with a newline, and the torn
line stays one unreadable line instead of corrupting its neighbour.

``shared=True`` is for several processes writing one log (``--workers``):
each batch is written under an exclusive ``flock`` on ``path.lock``, and
before writing, a writer whose open file is no longer ``path`` (another
process rotated it) reopens ``path`` and takes its size from the file, so
the size limit and the numbering hold for all writers together.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import re
from collections.abc import Sequence
from typing import IO

_SIZE = re.compile(r"^\s*(\d+)\s*(?:([kmgt])(?:i?b)?|b)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_size(text: str) -> int:
    """``"10M"`` -> 10485760. Bytes, or K/M/G/T (binary multiples, optional B/iB)."""
    m = _SIZE.match(text)
    if m is None:
        raise ValueError(f"not a size: {text!r} (use bytes or a K/M/G suffix, e.g. 10M)")
    size = int(m.group(1)) * _UNITS[(m.group(2) or "").lower()]
    if size <= 0:
        raise ValueError(f"size must be positive: {text!r}")
    return size


def size_arg(text: str) -> int:
    """argparse ``type=`` for sizes, with the message users should see."""
    try:
        return parse_size(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def count_arg(text: str) -> int:
    """argparse ``type=`` for a non-negative count."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more: {text!r}")
    return n


def rotated_name(path: str, n: int) -> str:
    return f"{path}.{n}"


def shift(path: str, keep: int) -> None:
    """``path`` -> ``path.1``, ``.1`` -> ``.2`` ...; with keep 0, ``path`` is removed."""
    if keep <= 0:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)
        return
    for n in range(keep - 1, 0, -1):
        with contextlib.suppress(FileNotFoundError):
            os.replace(rotated_name(path, n), rotated_name(path, n + 1))
    os.replace(path, rotated_name(path, 1))


class RotatingFile:
    """An append-only file of lines that rotates by size (no rotation if ``max_size`` None)."""

    def __init__(
        self, path: str, max_size: int | None = None, keep: int = 5, *, shared: bool = False
    ) -> None:
        self.path = path
        self.max_size = max_size
        self.keep = keep
        self.rotations = 0
        self.size = 0
        self._file: IO[bytes] | None = None
        self._torn = False  # the file ends inside a line (an earlier write failed)
        self._lock: int | None = None
        if shared:
            self._lock = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self._open()

    def _open(self) -> IO[bytes]:
        if self._file is None:
            f = open(self.path, "ab", buffering=0)  # noqa: SIM115 - closed in close()/rotate()
            self._file = f
            self.size = f.seek(0, os.SEEK_END)
            self._torn = False
        return self._file

    def rotate(self) -> None:
        """Close the current file, shift the old ones and open a fresh ``path``."""
        if self._file is not None:
            self._file.close()
            self._file = None
        try:
            shift(self.path, self.keep)
            self.rotations += 1
        finally:
            self._open()  # on a failed rename, keep appending to the same file

    def write_lines(self, lines: Sequence[bytes]) -> None:
        """Append each line (ending in ``\\n``), rotating between lines as needed."""
        if self._lock is None:
            self._write_lines(lines)
            return
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        try:
            self._follow()
            self._write_lines(lines)
        finally:
            fcntl.flock(self._lock, fcntl.LOCK_UN)

    def _follow(self) -> None:
        """Shared mode, lock held: write to what ``path`` is now, at its real size."""
        f = self._file
        if f is not None:
            try:
                same = os.path.samestat(os.fstat(f.fileno()), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if not same:
                f.close()
                self._file = None
        self._open()
        assert self._file is not None
        self.size = os.fstat(self._file.fileno()).st_size

    def _write_lines(self, lines: Sequence[bytes]) -> None:
        chunk: list[bytes] = []
        pending = self.size
        for line in lines:
            if self.max_size is not None and pending > 0 and pending + len(line) > self.max_size:
                self._write(b"".join(chunk))
                chunk = []
                self.rotate()
                pending = self.size
            chunk.append(line)
            pending += len(line)
        self._write(b"".join(chunk))

    def _write(self, data: bytes) -> None:
        if not data:
            return
        f = self._open()
        view = memoryview(b"\n" + data if self._torn else data)
        try:
            while view:
                n = f.write(view)
                if n is None:  # only non-blocking files say "try again"; ours block
                    raise BlockingIOError("write would block")
                self.size += n
                view = view[n:]
        except OSError:
            self._torn = not self._at_line_end()
            raise
        self._torn = False

    def _at_line_end(self) -> bool:
        """Whether the file ends with a newline (or is empty): after a failed write."""
        if self.size == 0:
            return True
        try:
            with open(self.path, "rb") as f:
                f.seek(self.size - 1)
                return f.read(1) == b"\n"
        except OSError:
            return False

    def flush(self) -> None:
        """Nothing is buffered here; kept so callers can treat it like a file."""

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None
