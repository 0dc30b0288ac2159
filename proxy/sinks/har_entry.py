"""One flow record (its JSON form, schema 1) -> one HAR 1.2 entry.

This is the only mapping from flow records to HAR: the live ``--har`` sink
calls it on ``record_to_json(record)`` and ``tapproxy convert`` on each line
of a flow log, so both produce the same entries. It works on the JSON dict
rather than on ``FlowRecord`` because that is what a flow log gives back.

Bodies are included when the record's preview holds the whole body
(``truncated`` false) or, with ``--capture-bodies``, from the captured body
(``proxy.sinks.har_bodies``: up to ``--capture-max-body``, marked
``_truncated`` with a ``comment`` when cut); otherwise the HAR ``comment``
says why the text is missing and how to get it. Content codings (gzip,
deflate, br, zstd) are undone, as browsers do, with the same bounded decoder
the rules use (proxy/rules/body.py), so ``content.text`` is the
representation and ``content.size`` its length. Timings are derived from
``timings_ms`` so that ``time`` is the sum of the phases (see
``har_timings``). Spec: http://www.softwareishard.com/blog/har-12-spec/
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime as dt
import email.utils
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from proxy.rules.body import CodecError, codings_of, decode
from proxy.sinks.har_bodies import BodySource, Captured
from proxy.words import plural

HTTP_KINDS = frozenset({"http", "websocket"})
"""Record kinds that are HTTP exchanges; ``tunnel`` (CONNECT) and ``tcp`` are not."""

MAX_DECODED = 64 * 1024 * 1024  # a decompression bomb must not eat the writer thread

Json = dict[str, Any]


def _pairs(headers: list[list[str]]) -> list[Json]:
    return [{"name": k, "value": v} for k, v in headers]


def _values(headers: list[list[str]], name: str) -> list[str]:
    lname = name.lower()
    return [v for k, v in headers if k.lower() == lname]


def _first(headers: list[list[str]], name: str, default: str = "") -> str:
    found = _values(headers, name)
    return found[0] if found else default


def request_cookies(headers: list[list[str]]) -> list[Json]:
    """``Cookie: a=1; b=2`` -> [{name, value}, ...] (RFC 6265 §4.2.1 cookie-string)."""
    out: list[Json] = []
    for header in _values(headers, "cookie"):
        for part in header.split(";"):
            part = part.strip()
            if part:
                name, _, value = part.partition("=")
                out.append({"name": name.strip(), "value": value.strip()})
    return out


def _cookie_date(text: str) -> str | None:
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.isoformat()


def response_cookies(headers: list[list[str]], start: str) -> list[Json]:
    """Each ``Set-Cookie`` -> {name, value, path, domain, expires, httpOnly, secure}.

    ``Max-Age`` wins over ``Expires`` (RFC 6265 §5.3 step 3) and is turned into
    an absolute ISO 8601 time from the flow's start, which is what HAR wants.
    """
    out: list[Json] = []
    for header in _values(headers, "set-cookie"):
        first, *attrs = header.split(";")
        name, _, value = first.partition("=")
        cookie: Json = {"name": name.strip(), "value": value.strip()}
        max_age: str | None = None
        for attr in attrs:
            key, _, val = attr.strip().partition("=")
            key, val = key.strip().lower(), val.strip()
            if key in ("path", "domain") and val:
                cookie[key] = val
            elif key == "expires" and "expires" not in cookie:
                when = _cookie_date(val)
                if when is not None:
                    cookie["expires"] = when
            elif key == "max-age":
                max_age = val
            elif key == "httponly":
                cookie["httpOnly"] = True
            elif key == "secure":
                cookie["secure"] = True
        if max_age is not None and max_age.lstrip("-").isdigit():
            base = dt.datetime.fromisoformat(start)
            with contextlib.suppress(OverflowError):
                cookie["expires"] = (base + dt.timedelta(seconds=int(max_age))).isoformat()
        out.append(cookie)
    return out


def query_string(url: str) -> list[Json]:
    """The URL's query as HAR name/value pairs, percent-decoded, blanks kept."""
    query = urlsplit(url).query
    return [{"name": k, "value": v} for k, v in parse_qsl(query, keep_blank_values=True)]


def _decode_content(data: bytes, headers: list[list[str]]) -> tuple[bytes | None, str | None]:
    """Undo the body's content codings with the rules' decoder (one implementation)."""
    codings = codings_of(_field_bytes(headers))
    if not codings:
        return data, None
    try:
        return decode(data, codings, MAX_DECODED), None
    except CodecError as e:
        return None, f"body not included: cannot decode content-encoding {', '.join(codings)}: {e}"


#: What a HAR says when a body is longer than the preview and was not captured.
HOW_TO_GET = (
    "run with --capture-bodies DIR for whole bodies (up to --capture-max-body), "
    "or raise --body-preview"
)


def whole_body(message: Json, captured: Captured | None = None) -> tuple[bytes | None, str | None]:
    """The complete body as sent (before content decoding), or None and why not.

    A truncated capture is returned too; ``_body`` marks it.
    """
    size = int(message.get("body_size") or 0)
    preview = message.get("body_preview")
    if size == 0:
        return b"", None
    if preview is not None and not preview.get("truncated", True):
        data = _preview_bytes(preview)
        return (data, None) if data is not None else (None, "body not included: unreadable preview")
    if captured is not None:
        if captured.data is None:
            return None, f"body not included: {captured.problem}"
        return captured.data, None
    kept = len(_preview_bytes(preview) or b"") if preview is not None else 0
    return None, f"body not included: {kept} of {plural(size, 'byte')} kept; {HOW_TO_GET}"


def _preview_bytes(preview: Json) -> bytes | None:
    text = str(preview.get("data", ""))
    if preview.get("encoding") == "base64":
        try:
            return base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            return None
    return text.encode("utf-8")


def _text_or_base64(data: bytes) -> tuple[str, bool]:
    """(text, is_base64): UTF-8 text as is, anything else base64."""
    try:
        return data.decode("utf-8"), False
    except UnicodeDecodeError:
        return base64.b64encode(data).decode("ascii"), True


def _decoded(message: Json, captured: Captured | None) -> tuple[bytes | None, str | None]:
    """The body with content codings removed, or None and a comment saying why.

    A body cut at ``--capture-max-body`` is kept as it is (it cannot be
    decoded) and the comment says so: the caller marks it ``_truncated``.
    """
    raw, why = whole_body(message, captured)
    if raw is None:
        return None, why
    if not raw:
        return raw, None
    if captured is not None and captured.truncated:
        size = int(message.get("body_size") or 0)
        if codings_of(_field_bytes(message.get("headers", []))):
            return None, f"body not included: cut at {len(raw)} of {size} bytes and content-coded"
        return raw, f"body truncated: the first {len(raw)} of {size} bytes (--capture-max-body)"
    return _decode_content(raw, message.get("headers", []))


def _field_bytes(headers: list[list[str]]) -> tuple[tuple[bytes, bytes], ...]:
    return tuple(
        (k.encode("latin-1", "replace"), v.encode("latin-1", "replace")) for k, v in headers
    )


def post_data(request: Json, captured: Captured | None = None) -> Json | None:
    """HAR ``postData`` for a request with a body; params for urlencoded forms."""
    if int(request.get("body_size") or 0) == 0:
        return None
    headers = request.get("headers", [])
    mime = _first(headers, "content-type")
    out: Json = {"mimeType": mime}
    data, why = _decoded(request, captured)
    if data is None:
        out["comment"] = why or "body not included"
        return out
    if why is not None:
        out["comment"], out["_truncated"] = why, True
    text, is_b64 = _text_or_base64(data)
    if is_b64:
        # HAR 1.2 has no encoding field for postData; this is haralyzer's and
        # others' convention for binary request bodies.
        out["_textBase64"] = text
        return out
    out["text"] = text
    if mime.split(";")[0].strip().lower() == "application/x-www-form-urlencoded":
        pairs = parse_qsl(text, keep_blank_values=True)
        out["params"] = [{"name": k, "value": v} for k, v in pairs]
    return out


def content(response: Json, captured: Captured | None = None) -> Json:
    """HAR ``content``: size after content decoding, text when whole, base64 if binary."""
    headers = response.get("headers", [])
    body_size = int(response.get("body_size") or 0)
    out: Json = {"size": body_size, "mimeType": _first(headers, "content-type")}
    data, why = _decoded(response, captured)
    if data is None:
        out["comment"] = why or "body not included"
        return out
    if why is not None:  # cut at --capture-max-body: size stays the whole body's
        out["comment"], out["_truncated"] = why, True
    else:
        out["size"] = len(data)
    if len(data) > body_size:
        out["compression"] = len(data) - body_size
    text, is_b64 = _text_or_base64(data)
    out["text"] = text
    if is_b64:
        out["encoding"] = "base64"
    return out


def _round(v: float) -> float:
    return round(v, 3)


def har_timings(timings_ms: Mapping[str, float | None], duration_ms: float, tunnel: bool) -> Json:
    """HAR timings from the record's phase marks (ms from start).

    Phases: connect (up to ``connected``), send (to ``request_done``), wait
    (to ``response_head``), receive (to ``response_done``). Marks that went
    backwards (a response before the request body ended) count as 0, so all
    phases are non-negative and their sum is the last mark. What is left up
    to ``duration_ms`` (an error before the next mark) goes to ``wait`` when
    no response began, else to ``receive``; a WebSocket's time ends at its
    101, the tunnel's life is not the request's. ``blocked``/``dns``/``ssl``
    are -1: DNS and TLS happen inside ``connect`` and are not measured apart.
    """
    cursor = 0.0

    def step(mark: float | None) -> float | None:
        nonlocal cursor
        if mark is None:
            return None
        d = max(0.0, mark - cursor)
        cursor = max(cursor, mark)
        return d

    connect = step(timings_ms.get("connected"))
    send = step(timings_ms.get("request_done"))
    wait = step(timings_ms.get("response_head"))
    receive = step(timings_ms.get("response_done"))
    rest = 0.0 if tunnel else max(0.0, duration_ms - cursor)
    if wait is None:
        wait, rest = rest, 0.0
    receive = (receive or 0.0) + rest
    return {
        "blocked": -1,
        "dns": -1,
        "connect": -1 if connect is None else _round(connect),
        "send": _round(send or 0.0),
        "wait": _round(wait),
        "receive": _round(receive),
        "ssl": -1,
    }


def timings_total(timings: Json) -> float:
    """HAR ``time``: the sum of the timings that apply (``ssl`` is inside ``connect``)."""
    keys = ("blocked", "dns", "connect", "send", "wait", "receive")
    return _round(sum(float(timings[k]) for k in keys if timings[k] != -1))


def har_request(request: Json, captured: Captured | None = None) -> Json:
    headers = request.get("headers", [])
    out: Json = {
        "method": request["method"],
        "url": request["url"],
        "httpVersion": request.get("http_version", "HTTP/1.1"),
        "cookies": request_cookies(headers),
        "headers": _pairs(headers),
        "queryString": query_string(request["url"]),
        "headersSize": -1,
        "bodySize": int(request.get("body_size") or 0),
    }
    post = post_data(request, captured)
    if post is not None:
        out["postData"] = post
    return out


def har_response(
    response: Json | None, start: str, error: str | None, captured: Captured | None = None
) -> Json:
    """The response, or the browsers' placeholder (status 0, ``_error``) when none came."""
    if response is None:
        return {
            "status": 0,
            "statusText": "",
            "httpVersion": "",
            "cookies": [],
            "headers": [],
            "content": {"size": 0, "mimeType": ""},
            "redirectURL": "",
            "headersSize": -1,
            "bodySize": -1,
            "_error": error or "no response",
        }
    headers = response.get("headers", [])
    out: Json = {
        "status": int(response["status"]),
        "statusText": response.get("reason", ""),
        "httpVersion": response.get("http_version", "HTTP/1.1"),
        "cookies": response_cookies(headers, start),
        "headers": _pairs(headers),
        "content": content(response, captured),
        "redirectURL": _first(headers, "location"),
        "headersSize": -1,
        "bodySize": int(response.get("body_size") or 0),
    }
    if error:
        out["_error"] = error
    return out


def har_entry(rec: Json, bodies: BodySource | None = None) -> Json | None:
    """The HAR entry for one flow record, or None for records that are not HTTP.

    ``bodies`` gives the captured bodies (``--capture-bodies``) that the
    record's preview does not hold whole.
    """
    request = rec.get("request")
    if rec.get("kind") not in HTTP_KINDS or request is None:
        return None
    start = str(rec["start"])
    tunnel = rec.get("tunnel")
    timings = har_timings(
        rec.get("timings_ms") or {}, float(rec["duration_ms"]), tunnel is not None
    )
    entry: Json = {
        "startedDateTime": start,
        "time": timings_total(timings),
        "request": har_request(request, bodies.body(rec, True) if bodies else None),
        "response": har_response(
            rec.get("response"),
            start,
            rec.get("error"),
            bodies.body(rec, False) if bodies else None,
        ),
        "cache": {},
        "timings": timings,
    }
    server = rec.get("server")
    if server:
        entry["serverIPAddress"] = server["ip"]
    client = rec.get("client")
    if client:
        entry["connection"] = str(client["port"])
    custom: Json = {
        "id": rec.get("id"),
        "kind": rec.get("kind"),
        "mode": rec.get("mode"),
        "error": rec.get("error"),
        "tls": rec.get("tls"),
        "client": client,
        "server": server,
    }
    if tunnel is not None:
        custom["tunnel"] = tunnel
    entry["_tapproxy"] = custom
    return entry
