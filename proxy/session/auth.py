"""Proxy authentication (RFC 9110 §11.7.1, Basic scheme RFC 7617).

A forward proxy reachable from other machines must not be an open door:
with ``--proxy-auth user:pass`` every request (CONNECT included) must carry
``Proxy-Authorization: Basic ...`` with those credentials, else it gets 407
with ``Proxy-Authenticate``. The header is hop-by-hop and never forwarded.
"""

from __future__ import annotations

import base64
import hmac

from proxy.http1 import RequestHead
from proxy.http1.fields import index_of, indexed_values

CHALLENGE = b'Proxy-Authenticate: Basic realm="tapproxy", charset="UTF-8"\r\n'


def expected_credentials(user_pass: str) -> bytes:
    """The token a client sends for ``user:pass``."""
    return base64.b64encode(user_pass.encode("utf-8"))


def authorized(head: RequestHead, token: bytes) -> bool:
    for value in indexed_values(index_of(head), b"proxy-authorization"):
        scheme, _, given = value.partition(b" ")
        if scheme.lower() == b"basic" and hmac.compare_digest(given.strip(), token):
            return True
    return False
