"""The flow routes of the admin API: the list, one flow, its bodies and
messages, marks, clearing, diffs and exports (docs/api.md, "Flows")."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

import proxy.web.bodyview as bodyview
import proxy.web.diffing as diffing
import proxy.web.export as export
from proxy.web.context import WEB, Predicate, WebContext
from proxy.web.rows import SIDES
from proxy.web.store import StoredFlow

#: The longest page of summaries one call returns.
MAX_PAGE = 5000


def bad_request(message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **extra}, status=400)


def not_found(flow_id: str) -> web.Response:
    return web.json_response({"error": f"no flow {flow_id} (unknown, or dropped)"}, status=404)


def compiled(ctx: WebContext, expr: str) -> Predicate | web.Response:
    """The filter, or the 400 that points at its column."""
    try:
        return ctx.compile_filter(expr)
    except ValueError as e:
        return bad_request(str(e), column=getattr(e, "column", None))


def _int(request: web.Request, name: str, default: int, high: int) -> int:
    try:
        return max(0, min(int(request.query.get(name, default)), high))
    except ValueError:
        return default


def with_state(ctx: WebContext, summary: dict[str, Any]) -> dict[str, Any]:
    summary.setdefault("state", "done")
    summary.setdefault("held", None)
    return summary


async def list_flows(request: web.Request) -> web.Response:
    ctx = request.app[WEB]
    expr = request.query.get("filter", "").strip()
    predicate = compiled(ctx, expr) if expr else None
    if isinstance(predicate, web.Response):
        return predicate
    offset = _int(request, "offset", 0, 1 << 40)
    limit = _int(request, "limit", 500, MAX_PAGE)
    newest = request.query.get("order", "desc") != "asc"
    # A filter reads the records (seconds for a full store): off the loop, which
    # keeps serving the proxy meanwhile; a plain page is an indexed read.
    if predicate is None:
        page, total = ctx.store.query(None, offset, limit, newest)
    else:
        page, total = await asyncio.to_thread(ctx.store.query, predicate, offset, limit, newest)
    return web.json_response(
        {
            "flows": [with_state(ctx, s) for s in page],
            "total": total,
            "stored": ctx.store.count,
            "dropped": ctx.store.dropped,
        },
        dumps=export.dumps_text,
    )


def _flow(request: web.Request) -> StoredFlow | web.Response:
    flow_id = request.match_info["id"]
    flow = request.app[WEB].store.get(flow_id)
    return not_found(flow_id) if flow is None else flow


async def get_flow(request: web.Request) -> web.Response:
    flow = _flow(request)
    if isinstance(flow, web.Response):
        return flow
    ctx = request.app[WEB]
    body = {
        "summary": with_state(ctx, dict(flow.summary)),
        "record": flow.record,
        "bodies": ctx.store.bodies(flow.id),
    }
    return web.json_response(body, dumps=export.dumps_text)


def _flow_side(request: web.Request) -> tuple[StoredFlow, str] | web.Response:
    """The flow and the body side the path names, or the 404/400 that says why not."""
    flow = _flow(request)
    if isinstance(flow, web.Response):
        return flow
    side = request.match_info["side"]
    if side not in SIDES:
        return bad_request(f"no side {side!r}: one of {', '.join(SIDES)}")
    return flow, side


async def get_body(request: web.Request) -> web.Response:
    found = _flow_side(request)
    if isinstance(found, web.Response):
        return found
    flow, side = found
    data = flow.body(side)
    if data is None:
        return web.json_response({"error": f"no {side} body stored"}, status=404)
    mime = bodyview.content_type(flow.record, side) or "application/octet-stream"
    # Served as received: the browser must not run it (an HTML body is not our page).
    headers = {"Content-Security-Policy": "sandbox", "X-Content-Type-Options": "nosniff"}
    if request.query.get("download"):
        headers["Content-Disposition"] = f'attachment; filename="{flow.id}.{side}.body"'
    return web.Response(body=data, content_type=_bare(mime), headers=headers)


def _bare(mime: str) -> str:
    return mime.split(";", 1)[0].strip() or "application/octet-stream"


async def view_body(request: web.Request) -> web.Response:
    found = _flow_side(request)
    if isinstance(found, web.Response):
        return found
    flow, side = found
    info = request.app[WEB].store.bodies(flow.id).get(side, {})
    view = bodyview.render(flow.record, side, flow.body(side), bool(info.get("truncated")))
    return web.json_response(view, dumps=export.dumps_text)


async def messages(request: web.Request) -> web.Response:
    flow = _flow(request)
    if isinstance(flow, web.Response):
        return flow
    limit = _int(request, "limit", 10_000, 100_000)
    offset = _int(request, "offset", 0, 1 << 40)
    items = request.app[WEB].store.messages(flow.id, offset, limit)
    return web.json_response({"messages": items}, dumps=export.dumps_text)


async def mark(request: web.Request) -> web.Response:
    body = await json_object(request)
    if isinstance(body, web.Response):
        return body
    flow_id = request.match_info["id"]
    if not request.app[WEB].store.set_marked(flow_id, bool(body.get("marked", True))):
        return not_found(flow_id)
    return web.json_response({"ok": True})


async def clear(request: web.Request) -> web.Response:
    ctx = request.app[WEB]
    ctx.store.clear()
    ctx.feed.publish({"type": "cleared"})
    return web.json_response({"ok": True})


async def diff(request: web.Request) -> web.Response:
    store = request.app[WEB].store
    a, b = request.query.get("a", ""), request.query.get("b", "")
    first, second = store.get(a), store.get(b)
    if first is None or second is None:
        return not_found(a if first is None else b)
    return web.json_response(diffing.flows(first, second), dumps=export.dumps_text)


async def export_one(request: web.Request) -> web.StreamResponse:
    flow = _flow(request)
    if isinstance(flow, web.Response):
        return flow
    response: web.StreamResponse = export.respond(request.query.get("format", "curl"), [flow])
    return response


async def json_object(request: web.Request) -> dict[str, Any] | web.Response:
    """The request's JSON object (``{}`` without a body), or the 400 that says why not."""
    if not request.can_read_body:
        return {}
    try:
        body = await request.json()
    except ValueError:
        return bad_request("the body must be JSON")
    if not isinstance(body, dict):
        return bad_request("the body must be a JSON object")
    return body


async def export_many(request: web.Request) -> web.StreamResponse:
    ctx = request.app[WEB]
    body = await json_object(request)
    if isinstance(body, web.Response):
        return body
    fmt = str(body.get("format", "har"))
    if "ids" in body:
        flows = [f for f in (ctx.store.get(str(i)) for i in body["ids"]) if f is not None]
    else:
        expr = str(body.get("filter", "")).strip()
        predicate = compiled(ctx, expr) if expr else None
        if isinstance(predicate, web.Response):
            return predicate
        page, _ = await asyncio.to_thread(ctx.store.query, predicate, 0, export.MAX_FLOWS, False)
        flows = [f for f in (ctx.store.get(s["id"]) for s in page) if f is not None]
    response: web.StreamResponse = export.respond(fmt, flows)
    return response


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/api/flows", list_flows)
    router.add_delete("/api/flows", clear)
    router.add_get("/api/flows/{id}", get_flow)
    router.add_get("/api/flows/{id}/body/{side}", get_body)
    router.add_get("/api/flows/{id}/view/{side}", view_body)
    router.add_get("/api/flows/{id}/messages", messages)
    router.add_post("/api/flows/{id}/mark", mark)
    router.add_get("/api/flows/{id}/export", export_one)
    router.add_get("/api/diff", diff)
    router.add_post("/api/export", export_many)
