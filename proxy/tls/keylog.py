"""NSS key log lines for Wireshark (``--keylog``), from both sides of interception."""

from __future__ import annotations

from OpenSSL import SSL

__all__ = ["KeyLog"]


class KeyLog:
    """Appends NSS key log lines to a file, as ``SSLKEYLOGFILE`` does.

    Used as a pyOpenSSL keylog callback on the client-facing contexts
    (:mod:`proxy.tls.leaf`) and the upstream one (:mod:`proxy.tls.client`).
    """

    def __init__(self, path: str) -> None:
        self._path = path

    def write(self, _conn: SSL.Connection, line: bytes) -> None:
        # Opened per line: several workers may share the file, and O_APPEND
        # keeps each line whole. Key logging is for debugging, not speed.
        with open(self._path, "ab") as f:
            f.write(line + b"\n")
