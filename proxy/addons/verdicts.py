"""What an addon's changes to a flow mean: a hook verdict, or a changed recorded flow.

At ``request``: ``flow.kill()`` is a ``Kill``; a ``flow.response`` set is a
``Reply`` (the answer in the server's place); a changed method, URL, header
fields or body (when it was offered whole) is a ``RequestEdit``. At
``response``: a kill, a new response object (a ``Reply``), or a changed
status or header fields (a ``ResponseEdit``; the body streams on
unchanged): response content set there is sent only as part of a ``Reply``.
"""

from __future__ import annotations

from dataclasses import replace

from proxy.addons.api import Flow, Response
from proxy.flow.hooks import Kill, Proceed, Reply, RequestEdit, ResponseEdit, Verdict
from proxy.replay.format import Body, RecordedFlow


def _reply(r: Response) -> Reply:
    reason = r.reason.encode("latin-1") if r.reason else None
    return Reply(r.status_code, r.headers.raw(), r.content or b"", reason)


def request_verdict(
    f: Flow, before: tuple[str, str, list[tuple[str, str]]], body: bytes | None = None
) -> Verdict:
    """``body``: the request body as offered (None: it streams, and stays as it is)."""
    if f.killed:
        return Kill()
    if f.response is not None:
        return _reply(f.response)
    method, url, fields = before
    r = f.request
    new_body = r.content if body is not None and r.content != body else None
    if (r.method, r.url, r.headers.fields) == (method, url, fields) and new_body is None:
        return Proceed()
    return Proceed(
        RequestEdit(
            method=r.method.encode("latin-1") if r.method != method else None,
            url=r.url if r.url != url else None,
            headers=r.headers.raw() if r.headers.fields != fields else None,
            body=new_body,
        )
    )


def response_verdict(
    f: Flow, original: Response, before: tuple[int, list[tuple[str, str]]]
) -> Verdict:
    if f.killed:
        return Kill()
    r = f.response
    if r is None:
        return Proceed()
    if r is not original:
        return _reply(r)
    status, fields = before
    if (r.status_code, r.headers.fields) == (status, fields):
        return Proceed()
    return Proceed(
        ResponseEdit(
            status=r.status_code if r.status_code != status else None,
            headers=r.headers.raw() if r.headers.fields != fields else None,
        )
    )


def _body(old: Body, content: bytes | None) -> Body:
    if content is None or content == old.data:
        return old
    return Body(content, len(content))


def recorded_flow(flow: RecordedFlow, f: Flow) -> RecordedFlow:
    """The recorded flow with what a ``save`` hook changed (head fields, bodies, URL)."""
    req = flow.request
    assert req is not None
    request = replace(
        req,
        method=f.request.method.encode("latin-1"),
        url=f.request.url,
        headers=f.request.headers.raw(),
        body=_body(req.body, f.request.content),
    )
    response = flow.response
    if response is not None and f.response is not None:
        response = replace(
            response,
            status=f.response.status_code,
            headers=f.response.headers.raw(),
            body=_body(response.body, f.response.content),
        )
    forwarded = flow.forwarded
    if forwarded is not None:  # a secret redacted as received is redacted as sent too
        forwarded = replace(forwarded, headers=_redacted(forwarded.headers, req, request))
    return replace(flow, request=request, response=response, forwarded=forwarded)


def _redacted(
    fields: tuple[tuple[bytes, bytes], ...], old: object, new: object
) -> tuple[tuple[bytes, bytes], ...]:
    """Values the hook replaced in the received request, replaced in the forwarded one."""
    before = dict(getattr(old, "headers", ()))
    after = dict(getattr(new, "headers", ()))
    changed = {before[k]: after.get(k, b"") for k in before if before[k] != after.get(k)}
    return tuple((k, changed.get(v, v)) for k, v in fields)
