"""Keep secrets out of recordings: the upstream still gets them, the file does not.

A ``save`` hook runs on each flow before it is written by ``--save``. It
replaces the values of credential header fields (``Authorization``,
``Cookie``, ``Set-Cookie``, ``X-Api-Key``, ``Proxy-Authorization``) and of
JSON body fields named like secrets (``password``, ``token``, ``secret``,
``api_key``...) with ``REDACTED``, and scrubs every value it removed from the
bodies too (an echo service or an error page may repeat them).

    tapproxy --save traffic.tap -s addons/examples/redact_secrets.py
"""

from __future__ import annotations

import json
import re
from typing import Any

from proxy.addons.api import Flow, Headers

MASK = "REDACTED"
HEADERS = ("authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key")
SECRET_KEYS = re.compile(r"pass(word)?|secret|token|api[-_]?key|credential", re.IGNORECASE)


def _headers(headers: Headers, found: set[str]) -> None:
    for name in list(headers):
        if name.lower() in HEADERS:
            found.update(headers.get_all(name))
            headers[name] = MASK


def _json(doc: Any, found: set[str]) -> Any:
    if isinstance(doc, dict):
        out = {}
        for k, v in doc.items():
            if SECRET_KEYS.search(str(k)) and isinstance(v, (str, int, float)):
                found.add(str(v))
                out[k] = MASK
            else:
                out[k] = _json(v, found)
        return out
    if isinstance(doc, list):
        return [_json(v, found) for v in doc]
    return doc


def _body(content: bytes | None, found: set[str]) -> bytes | None:
    if not content:
        return content
    try:
        doc = json.loads(content)
    except ValueError:
        pass
    else:
        content = json.dumps(_json(doc, found)).encode()
    for secret in sorted(found, key=len, reverse=True):
        if len(secret) >= 4:  # never mask short, common strings
            content = content.replace(secret.encode(), MASK.encode())
            escaped = json.dumps(secret)[1:-1].encode()  # as it appears inside JSON text
            content = content.replace(escaped, MASK.encode())
    return content


def save(flow: Flow) -> None:
    found: set[str] = set()
    _headers(flow.request.headers, found)
    if flow.response is not None:
        _headers(flow.response.headers, found)
    flow.request.content = _body(flow.request.content, found)
    if flow.response is not None:
        flow.response.content = _body(flow.response.content, found)
