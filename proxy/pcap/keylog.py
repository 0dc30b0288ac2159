"""NSS key log files (``SSLKEYLOGFILE``) read for offline TLS decryption.

The format is the one NSS defined and OpenSSL, BoringSSL, curl, browsers and
our own ``--keylog`` write: one secret per line, ``LABEL <client_random hex>
<secret hex>``, ``#`` starting a comment. The client random (the 32 bytes of
the ClientHello's ``random``) names the connection, so a capture's
connections are matched to their secrets by it.

Labels used here (others, such as ``EXPORTER_SECRET`` or
``CLIENT_EARLY_TRAFFIC_SECRET``, are kept but not needed; malformed lines are
counted and skipped, as Wireshark does):

* ``CLIENT_RANDOM``: the TLS 1.2 master secret (48 bytes);
* ``CLIENT_HANDSHAKE_TRAFFIC_SECRET``, ``SERVER_HANDSHAKE_TRAFFIC_SECRET``,
  ``CLIENT_TRAFFIC_SECRET_0``, ``SERVER_TRAFFIC_SECRET_0``: TLS 1.3 traffic
  secrets (RFC 8446 §7.1).

``KeyLog.lookup`` re-reads lines appended to the file since the last read when
a secret is missing, so a live capture (``tapproxy sniff``) can find the keys
a client writes while it runs. Memory: one entry per secret in the file.
"""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass, field

__all__ = ["KeyLog", "KeyLogStats", "Label"]

_RANDOM_SIZE = 32
_MAX_SECRET = 64  # SHA-384 secrets are 48 bytes; leave room


class Label(enum.Enum):
    """The key log labels the decryptor asks for."""

    CLIENT_RANDOM = "CLIENT_RANDOM"
    CLIENT_HANDSHAKE_TRAFFIC_SECRET = "CLIENT_HANDSHAKE_TRAFFIC_SECRET"
    SERVER_HANDSHAKE_TRAFFIC_SECRET = "SERVER_HANDSHAKE_TRAFFIC_SECRET"
    CLIENT_TRAFFIC_SECRET_0 = "CLIENT_TRAFFIC_SECRET_0"
    SERVER_TRAFFIC_SECRET_0 = "SERVER_TRAFFIC_SECRET_0"


_KNOWN = {label.value.encode(): label for label in Label}


@dataclass(slots=True)
class KeyLogStats:
    secrets: int = 0
    skipped_lines: int = 0  # malformed or with a label we do not use


@dataclass(slots=True)
class KeyLog:
    """Secrets by (client random, label); built from text or read from a file."""

    path: str | None = None
    stats: KeyLogStats = field(default_factory=KeyLogStats)
    _secrets: dict[tuple[bytes, Label], bytes] = field(default_factory=dict)
    _offset: int = 0
    _partial: bytes = b""

    @classmethod
    def from_file(cls, path: str) -> KeyLog:
        """Read ``path`` now (``OSError`` if it cannot be read)."""
        log = cls(path=path)
        log._read_more(must_exist=True)
        return log

    @classmethod
    def from_text(cls, text: bytes) -> KeyLog:
        log = cls()
        log.feed(text)
        if log._partial:
            log._line(log._partial)
            log._partial = b""
        return log

    def __len__(self) -> int:
        return len(self._secrets)

    def feed(self, data: bytes) -> None:
        """Add complete lines from ``data``; a trailing partial line waits for more."""
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        for line in lines:
            self._line(line)

    def lookup(self, client_random: bytes, label: Label) -> bytes | None:
        """The secret for this connection and label, re-reading a growing file once."""
        secret = self._secrets.get((client_random, label))
        if secret is None and self.path is not None and self._read_more(must_exist=False):
            secret = self._secrets.get((client_random, label))
        return secret

    def _read_more(self, must_exist: bool) -> bool:
        """Read what was appended since last time; True if anything was."""
        assert self.path is not None
        try:
            with open(self.path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if size <= self._offset:
                    return False
                f.seek(self._offset)
                data = f.read(size - self._offset)
        except OSError:
            if must_exist:
                raise
            return False
        self._offset += len(data)
        self.feed(data)
        return True

    def _line(self, raw: bytes) -> None:
        line = raw.strip()
        if not line or line.startswith(b"#"):
            return
        parts = line.split()
        label = _KNOWN.get(parts[0]) if len(parts) == 3 else None
        if label is None:
            self.stats.skipped_lines += 1
            return
        try:
            client_random, secret = (
                bytes.fromhex(parts[1].decode()),
                bytes.fromhex(parts[2].decode()),
            )
        except (ValueError, UnicodeDecodeError):
            self.stats.skipped_lines += 1
            return
        if len(client_random) != _RANDOM_SIZE or not 0 < len(secret) <= _MAX_SECRET:
            self.stats.skipped_lines += 1
            return
        if (client_random, label) not in self._secrets:
            self.stats.secrets += 1
        self._secrets[client_random, label] = secret
