"""The filters an expression can use: name, argument, and what each looks at.

One table, read by the parser (which names exist, what argument each takes),
the evaluator (``proxy.flowfilter.evaluate`` builds a test per name) and the
docs (docs/filters.md lists the same names). The names and meanings follow
mitmproxy's filter expressions so habits carry over.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Arg(Enum):
    NONE = "none"
    REGEX = "regex"
    INT = "int"


@dataclass(frozen=True, slots=True)
class Operator:
    name: str  # without the tilde
    arg: Arg
    help: str
    reads_body: bool = False  # needs the bodies (``Filter.needs_bodies``)


OPERATORS: dict[str, Operator] = {
    op.name: op
    for op in (
        Operator("all", Arg.NONE, "every flow"),
        Operator("a", Arg.NONE, "an asset: response Content-Type of script, CSS, image or font"),
        Operator("b", Arg.REGEX, "request or response body", reads_body=True),
        Operator("bq", Arg.REGEX, "request body", reads_body=True),
        Operator("bs", Arg.REGEX, "response body", reads_body=True),
        Operator("c", Arg.INT, "response status code"),
        Operator("d", Arg.REGEX, "host (domain) of the request"),
        Operator("dst", Arg.REGEX, "server address, ip:port"),
        Operator("e", Arg.NONE, "the flow ended in an error"),
        Operator("grpc", Arg.NONE, "gRPC calls and their messages"),
        Operator("h", Arg.REGEX, "a request or response header line, 'Name: value'"),
        Operator("hq", Arg.REGEX, "a request header line"),
        Operator("hs", Arg.REGEX, "a response header line"),
        Operator("http", Arg.NONE, "HTTP flows (HTTP/1, HTTP/2, gRPC, SSE, WebSocket)"),
        Operator("m", Arg.REGEX, "request method"),
        Operator("marked", Arg.NONE, "marked flows (in the web UI)"),
        Operator("q", Arg.NONE, "a request that has no response (yet)"),
        Operator("s", Arg.NONE, "a flow with a response"),
        Operator("src", Arg.REGEX, "client address, ip:port"),
        Operator("sse", Arg.NONE, "server-sent event streams and their events"),
        Operator("t", Arg.REGEX, "request or response Content-Type"),
        Operator("tcp", Arg.NONE, "raw TCP relays and relayed tunnels"),
        Operator("tq", Arg.REGEX, "request Content-Type"),
        Operator("ts", Arg.REGEX, "response Content-Type"),
        Operator("tunnel", Arg.NONE, "relayed tunnels (CONNECT or Upgrade not decoded)"),
        Operator("u", Arg.REGEX, "URL (a bare word means ~u word)"),
        Operator("websocket", Arg.NONE, "WebSocket connections and their messages"),
    )
}
