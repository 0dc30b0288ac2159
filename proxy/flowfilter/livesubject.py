"""A subject from a flow held at a hook (a breakpoint's filter).

At ``REQUEST`` the request is what will be sent (after rules: ``forward``),
with its body when the session buffered it whole (``LiveFlow.body``); at
``RESPONSE_HEAD`` the response head is the one held. The response body is
not known at either point (``~bs`` is false), nor are the addresses or an
error. An ``Upgrade: websocket`` request is ``~websocket`` already, a
``application/grpc`` request ``~grpc``, so a breakpoint can catch them.
"""

from __future__ import annotations

from proxy.flow.hooks import LiveFlow
from proxy.flowfilter.subject import (
    Fields,
    FlowSubject,
    Kind,
    Side,
    content_types,
    host_of,
    is_event_stream,
    version_kind,
)


def live_subject(live: LiveFlow, marked: bool = False) -> FlowSubject:
    head = live.forward
    response = live.response_head

    def read(side: Side) -> bytes | None:
        return live.body if side == "request" else None

    url = live.url
    return FlowSubject(
        kind=_kind(
            head.fields,
            head.version,
            response.fields if response else None,
            response.version if response else None,
        ),
        url=url,
        host=host_of(url),
        method=head.method.decode("latin-1"),
        status=response.status if response else None,
        request_headers=head.fields,
        response_headers=response.fields if response else None,
        marked=marked,
        read_body=read,
    )


def _kind(
    request: Fields, version: bytes, response: Fields | None, response_version: bytes | None
) -> Kind:
    if any(k.lower() == b"upgrade" and b"websocket" in v.lower() for k, v in request):
        return Kind.WEBSOCKET
    if any(v.lower().startswith(b"application/grpc") for v in content_types(request)):
        return Kind.GRPC
    if is_event_stream(response):
        return Kind.SSE
    return version_kind(version, response_version)
