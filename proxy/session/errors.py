"""Errors the shell reports to a session."""

from __future__ import annotations


class UpstreamError(Exception):
    """Why a server connection could not be used; ``timeout`` selects 504."""

    def __init__(self, message: str, timeout: bool = False) -> None:
        super().__init__(message)
        self.timeout = timeout
