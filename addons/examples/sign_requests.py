"""Sign every request with HMAC-SHA256, as an API gateway in front of a service would.

The signature covers the method, the path with its query, a timestamp and
the SHA-256 of the body (the proxy hands ``request()`` the whole body, up to
``--max-body``):

    X-Timestamp: <unix seconds>
    X-Signature: hex(HMAC-SHA256(secret, METHOD "\\n" PATH?QUERY "\\n" TS "\\n" hex(sha256(body))))

The secret comes from ``TAPPROXY_HMAC_SECRET``. Run:

    TAPPROXY_HMAC_SECRET=s3cret tapproxy -s addons/examples/sign_requests.py
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from urllib.parse import urlsplit

from proxy.addons.api import Flow

SECRET = os.environ.get("TAPPROXY_HMAC_SECRET", "dev-secret").encode()


def signature(method: str, url: str, timestamp: str, body: bytes) -> str:
    parts = urlsplit(url)
    target = parts.path + ("?" + parts.query if parts.query else "")
    digest = hashlib.sha256(body).hexdigest()
    message = "\n".join((method, target, timestamp, digest)).encode()
    return hmac.new(SECRET, message, hashlib.sha256).hexdigest()


def request(flow: Flow) -> None:
    r = flow.request
    timestamp = str(int(time.time()))
    r.headers["X-Timestamp"] = timestamp
    r.headers["X-Signature"] = signature(r.method, r.url, timestamp, r.content or b"")
