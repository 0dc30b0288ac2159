"""Add latency to the requests that ask for it: ``X-Delay-Ms: 250``.

An ``async`` request hook: the flow waits while the rest of the proxy keeps
serving. The header is removed before the request goes upstream. Useful to
see how a client copes with one slow dependency, chosen per request.

    tapproxy -s addons/examples/latency_by_header.py
    curl -x http://127.0.0.1:8080 -H 'X-Delay-Ms: 500' http://svc/api
"""

from __future__ import annotations

import asyncio

from proxy.addons.api import Flow

HEADER = "X-Delay-Ms"
MAX_MS = 60_000


async def request(flow: Flow) -> None:
    asked = flow.request.headers.get(HEADER)
    if asked is None:
        return
    del flow.request.headers[HEADER]
    try:
        delay = min(max(int(asked), 0), MAX_MS)
    except ValueError:
        return
    await asyncio.sleep(delay / 1000)
