"""A recorded flow as a ``FlowRecord`` again, so the existing sinks show it.

``-r FILE`` prints a recording through the console sink, and ``tapproxy
convert`` writes a recording as a flow log (with body files) or a HAR
through the same writers the live proxy uses. Whole bodies travel as
``CapturedBodies``: with an empty directory only the HAR gets them; with a
directory they become body files named in the flow log.
"""

from __future__ import annotations

from proxy.flow.record import (
    CapturedBodies,
    FlowRecord,
    Message,
    RequestInfo,
    ResponseInfo,
    Source,
    Timings,
    TlsInfo,
)
from proxy.replay.format import RecordedFlow, RecordedRequest, RecordedResponse

#: Bytes of a body kept as the record's preview (the flow log's default).
PREVIEW = 256


def _message(r: RecordedRequest | RecordedResponse, preview: int) -> Message:
    return Message(r.headers, r.body.size, r.body.data[:preview], r.version)


def _request(r: RecordedRequest, preview: int) -> RequestInfo:
    return RequestInfo(r.method, r.url, _message(r, preview))


def _response(r: RecordedResponse, preview: int) -> ResponseInfo:
    return ResponseInfo(r.status, r.reason, _message(r, preview))


def _at(start: float, offset: float | None) -> float | None:
    return None if offset is None else start + offset


def flow_record(f: RecordedFlow, directory: str = "", preview: int = PREVIEW) -> FlowRecord:
    """``directory``: where body files go (empty: the bodies ride along for a HAR)."""
    request = None
    if f.request is not None:
        request = _request(f.request, preview)
        if f.forwarded is not None:
            request = RequestInfo(
                request.method, request.url, request.message, _request(f.forwarded, preview)
            )
    response = None
    if f.response is not None:
        upstream = _response(f.upstream, preview) if f.upstream else None
        r = f.response
        source = Source.PROXY if f.source == Source.PROXY.value else Source.UPSTREAM
        response = ResponseInfo(r.status, r.reason, _message(r, preview), upstream, source)
    bodies = _bodies(f, directory, preview)
    o = f.offsets
    return FlowRecord(
        id=f.id,
        kind=f.kind,
        mode=f.mode,
        start=f.start,
        end=f.end,
        client=f.client or ("0.0.0.0", 0),
        server=f.server,
        request=request,
        response=response,
        timings=Timings(
            f.start,
            _at(f.start, o.connected),
            _at(f.start, o.request_done),
            _at(f.start, o.response_head),
            _at(f.start, o.response_done),
        ),
        error=f.error,
        tls=TlsInfo(True) if f.tls else None,
        bodies=bodies,
    )


def _bodies(f: RecordedFlow, directory: str, preview: int) -> CapturedBodies | None:
    req = f.request.body if f.request else None
    resp = f.response.body if f.response else None
    req_data = req.data if req is not None and len(req.data) > preview else None
    resp_data = resp.data if resp is not None and len(resp.data) > preview else None
    if req_data is None and resp_data is None:
        return None
    return CapturedBodies(
        directory, req_data, resp_data,
        req is not None and req.truncated, resp is not None and resp.truncated,
    )  # fmt: skip
