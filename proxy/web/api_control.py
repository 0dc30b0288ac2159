"""The control routes of the admin API: breakpoints and held flows, resend,
rules reload, status and ``/metrics`` (docs/api.md)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from proxy.config import ConfigError
from proxy.web.api_flows import bad_request, json_object, not_found
from proxy.web.context import WEB
from proxy.web.intercept import BreakpointSpec, EditError, body_of, header_fields


def _spec_json(spec: BreakpointSpec) -> dict[str, Any]:
    return {
        "filter": spec.filter,
        "request": spec.request,
        "response": spec.response,
        "messages": spec.messages,
        "timeout": spec.timeout,
    }


async def get_intercept(request: web.Request) -> web.Response:
    return web.json_response(_spec_json(request.app[WEB].breakpoints.spec))


async def put_intercept(request: web.Request) -> web.Response:
    body = await json_object(request)
    if isinstance(body, web.Response):
        return body
    breakpoints = request.app[WEB].breakpoints
    old = breakpoints.spec
    try:
        timeout = float(body.get("timeout", old.timeout))
    except (TypeError, ValueError):
        return bad_request("timeout must be a number of seconds")
    if not 0 < timeout <= 86400:
        return bad_request("timeout must be between 0 and 86400 seconds")
    spec = BreakpointSpec(
        str(body.get("filter", old.filter)),
        bool(body.get("request", old.request)),
        bool(body.get("response", old.response)),
        bool(body.get("messages", old.messages)),
        timeout,
    )
    try:
        breakpoints.set(spec)
    except ValueError as e:
        return bad_request(str(e), column=getattr(e, "column", None))
    return web.json_response(_spec_json(spec))


async def list_held(request: web.Request) -> web.Response:
    return web.json_response(request.app[WEB].breakpoints.held())


async def _act(request: web.Request, action: str) -> web.Response:
    body = await json_object(request)
    if isinstance(body, web.Response):
        return body
    breakpoints = request.app[WEB].breakpoints
    flow_id = request.match_info["id"]
    try:
        if action == "resume":
            breakpoints.resume(flow_id, body)
        elif action == "reply":
            breakpoints.reply(flow_id, body)
        else:
            breakpoints.kill(flow_id)
    except KeyError:
        return web.json_response({"error": f"flow {flow_id} is not held"}, status=404)
    except EditError as e:
        return bad_request(str(e))
    return web.json_response({"ok": True})


async def resume(request: web.Request) -> web.Response:
    return await _act(request, "resume")


async def reply(request: web.Request) -> web.Response:
    return await _act(request, "reply")


async def kill(request: web.Request) -> web.Response:
    return await _act(request, "kill")


async def resend(request: web.Request) -> web.Response:
    """The flow's request as it went upstream (or as edited here), sent again."""
    ctx = request.app[WEB]
    flow_id = request.match_info["id"]
    flow = ctx.store.get(flow_id)
    if flow is None:
        return not_found(flow_id)
    edit = await json_object(request)
    if isinstance(edit, web.Response):
        return edit
    record = flow.record.get("request") or {}
    sent = record.get("forwarded") or record
    method = str(edit.get("method") or sent.get("method") or "GET")
    url = str(edit.get("url") or sent.get("url") or "")
    if not url.startswith(("http://", "https://")):
        return bad_request("only http:// and https:// requests can be resent")
    try:  # parsed as a held flow's edit is: a malformed one is a 400 naming why
        given = body_of(edit)
        fields = header_fields(edit["headers"]) if edit.get("headers") is not None else None
    except EditError as e:
        return bad_request(str(e))
    if fields is None:
        pairs = [(k, v) for k, v in sent.get("headers", []) if not k.startswith(":")]
    else:
        pairs = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in fields]
    if given is not None:
        body = given
    else:
        stored = flow.body("request_sent") if "forwarded" in record else None
        body = stored if stored is not None else (flow.body("request") or b"")
    result = await ctx.resend(method, url, pairs, body)
    if result.error is not None:
        return web.json_response({"error": result.error}, status=502)
    return web.json_response({"status": result.status})


async def reload_rules(request: web.Request) -> web.Response:
    reload = request.app[WEB].reload_rules
    if reload is None:
        return bad_request("the proxy was started without --rules")
    try:
        count = reload()
    except ConfigError as e:
        return bad_request(str(e))
    return web.json_response({"ok": True, "rules": count})


async def status(request: web.Request) -> web.Response:
    ctx = request.app[WEB]
    store = ctx.store
    out = {
        **ctx.status(),
        "stored": store.count,
        "dropped": store.dropped,
        "store_bytes": store.size_bytes,
        "max_flows": store.max_flows,
        "max_store_size": store.max_size,
        "held": len(ctx.breakpoints.held()),
    }
    return web.json_response(out)


async def metrics(request: web.Request) -> web.Response:
    ctx = request.app[WEB]
    return web.Response(
        body=ctx.metrics.exposition(),
        headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"},
    )


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/api/intercept", get_intercept)
    router.add_put("/api/intercept", put_intercept)
    router.add_get("/api/held", list_held)
    router.add_post("/api/held/{id}/resume", resume)
    router.add_post("/api/held/{id}/reply", reply)
    router.add_post("/api/held/{id}/kill", kill)
    router.add_post("/api/flows/{id}/resend", resend)
    router.add_post("/api/rules/reload", reload_rules)
    router.add_get("/api/status", status)
    router.add_get("/metrics", metrics)
