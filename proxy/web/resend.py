"""Resend: a request sent again through the proxy's own listener.

It goes in as a client's would, so it meets the same rules, hooks and
interception, and shows in the list as a flow of its own. A forward
listener is used as an HTTP proxy (https as CONNECT, trusting our CA when
the proxy intercepts); a reverse or transparent listener is sent the request
directly, with the flow's Host. The client is aiohttp's, told to add and
undo nothing (no automatic headers, no decompression, no redirects).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp
from multidict import CIMultiDict

from proxy.web.context import Resent

#: How long a resent request may take, in all.
TIMEOUT = 60.0
_DROP = frozenset({"content-length", "transfer-encoding", "connection", "proxy-connection"})


@dataclass(frozen=True, slots=True)
class Entry:
    """Where a resent request goes in: a listener's address and whether it is a
    forward proxy (else it takes requests as their server would)."""

    host: str
    port: int
    forward: bool
    ca_file: str | None  # our CA, trusted for https when the proxy intercepts
    proxy_auth: str | None = None  # USER:PASS when the listener asks for it


class Resender:
    def __init__(self, entry: Entry) -> None:
        self.entry = entry

    def _tls(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        if self.entry.ca_file:
            context.load_verify_locations(self.entry.ca_file)
        return context

    async def __call__(
        self, method: str, url: str, headers: list[tuple[str, str]], body: bytes
    ) -> Resent:
        entry = self.entry
        fields = CIMultiDict((k, v) for k, v in headers if k.lower() not in _DROP)
        proxy = None
        target = url
        if entry.forward:
            proxy = f"http://{entry.host}:{entry.port}"
            if entry.proxy_auth:
                user, _, password = entry.proxy_auth.partition(":")
                proxy = f"http://{user}:{password}@{entry.host}:{entry.port}"
        else:
            parts = urlsplit(url)
            fields.setdefault("Host", parts.netloc)
            path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            target = f"{parts.scheme}://{entry.host}:{entry.port}{path}"
        timeout = aiohttp.ClientTimeout(total=TIMEOUT)
        connector = aiohttp.TCPConnector(ssl=self._tls(), force_close=True)
        try:
            async with (
                aiohttp.ClientSession(
                    connector=connector,
                    timeout=timeout,
                    auto_decompress=False,
                    skip_auto_headers=("User-Agent", "Accept-Encoding", "Accept"),
                ) as session,  # fmt: skip
                session.request(
                    method,
                    target,
                    headers=fields,
                    data=body or None,
                    proxy=proxy,
                    allow_redirects=False,
                ) as response,  # fmt: skip
            ):
                await response.read()
                return Resent(response.status)
        except (aiohttp.ClientError, TimeoutError, ssl.SSLError, ValueError) as e:
            return Resent(None, f"{type(e).__name__}: {e}")
