"""``tapproxy rules check`` and ``tapproxy rules explain``.

``check`` loads rule files and prints every error as
``file:line:column: path: message`` (exit 1), or a one-line summary.
``explain`` shows, for one request (and optionally a response), which rules
match, why the others do not, and the resulting request, answer and faults.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO
from urllib.parse import urlsplit

from proxy.cli.rules_ws import explain_ws
from proxy.rules import RequestInfo, RulesError, RuleSet, load_rules
from proxy.rules.explain import EditStep, Explanation, Verdict, explain
from proxy.rules.facts import DEFAULT_PORTS
from proxy.rules.plans import CloseConnection, MapRemote, Respond, Terminal
from proxy.words import plural


def main(argv: list[str]) -> int:
    """Entry point for ``tapproxy rules ...``; returns the exit status."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    if args.command == "check":
        return _check(args.files, sys.stdout, sys.stderr)
    return _explain(args, sys.stdout, sys.stderr)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tapproxy rules", description="Check and explain rule files.")
    sub = p.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="validate rule files (exit 1 on error)")
    check.add_argument("files", nargs="+", type=Path, metavar="FILE")
    ex = sub.add_parser("explain", help="which rules match a request, and what they do")
    ex.add_argument("files", nargs="+", type=Path, metavar="FILE")
    ex.add_argument(
        "request",
        metavar="REQUEST",
        help="'METHOD URL' or 'URL', tcp://host:port, or ws://host/path (with --message)",
    )
    ex.add_argument(
        "-H", "--header", action="append", default=[], help="request header 'name: value'"
    )
    ex.add_argument("--body", default="", help="request body")
    ex.add_argument("--client", default="127.0.0.1", help="client address")
    ex.add_argument("--mode", default="regular", help="listener mode name")
    ex.add_argument("--status", type=int, help="also evaluate a response with this status")
    ex.add_argument("--message", default="", help="a WebSocket message (ws:// URLs)")
    ex.add_argument(
        "--direction", choices=("upstream", "downstream"), default="downstream",
        help="the WebSocket message's direction (upstream: client to server)",
    )  # fmt: skip
    ex.add_argument("--binary", action="store_true", help="the WebSocket message is binary")
    ex.add_argument("-R", "--response-header", action="append", default=[], help="'name: value'")
    ex.add_argument("--response-body", default="", help="response body")
    return p


def _load(files: Sequence[Path], err: TextIO) -> RuleSet | None:
    try:
        return load_rules(files)
    except RulesError as e:
        for error in e.errors:
            print(error, file=err)
        return None


def _check(files: Sequence[Path], out: TextIO, err: TextIO) -> int:
    rules = _load(files, err)
    if rules is None:
        return 1
    counts = f"{plural(len(rules.rules), 'HTTP rule')}, {plural(len(rules.tcp_rules), 'TCP rule')}"
    if rules.ws_rules:
        counts += f", {plural(len(rules.ws_rules), 'WebSocket rule')}"
    if rules.sse_rules:
        counts += f", {plural(len(rules.sse_rules), 'event rule')}"
    print(f"ok: {counts} in {plural(len(rules.files), 'file')}", file=out)
    return 0


def parse_request(text: str, headers: Sequence[str], client: str, mode: str) -> RequestInfo:
    """``'GET https://api.svc/v1/users?id=3'`` and ``-H`` values as a ``RequestInfo``."""
    method, _, url = text.strip().partition(" ")
    if not url:
        method, url = "GET", method
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"expected an http(s) URL, got {url!r}")
    port = parts.port or DEFAULT_PORTS[parts.scheme]
    fields = [(b"host", parts.netloc.encode())]
    for h in headers:
        name, sep, value = h.partition(":")
        if not sep:
            raise ValueError(f"expected 'name: value', got {h!r}")
        fields.append((name.strip().encode(), value.strip().encode()))
    return RequestInfo(
        parts.scheme,
        parts.hostname,
        port,
        method,
        parts.path or "/",
        parts.query,
        tuple(fields),
        client,
        mode,
    )


def _fields(values: Sequence[str]) -> tuple[tuple[bytes, bytes], ...]:
    out = []
    for h in values:
        name, _, value = h.partition(":")
        out.append((name.strip().encode(), value.strip().encode()))
    return tuple(out)


def _explain(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    rules = _load(args.files, err)
    if rules is None:
        return 1
    if args.request.startswith("tcp://"):
        return _explain_tcp(rules, args, out, err)
    if args.request.startswith(("ws://", "wss://")):
        return explain_ws(rules, args, out, err)
    try:
        info = parse_request(args.request, args.header, args.client, args.mode)
    except ValueError as e:
        print(f"tapproxy rules explain: {e}", file=err)
        return 2
    result = explain(
        rules,
        info,
        body=args.body.encode(),
        status=args.status,
        response_fields=_fields(args.response_header),
        response_body=args.response_body.encode(),
    )
    _print(result, out)
    return 0


def _print(result: Explanation, out: TextIO) -> None:
    plan = result.request
    print(f"{plan.info.method} {plan.info.url}", file=out)
    width = max((len(v.rule) for v in result.verdicts), default=0)
    for v in result.verdicts:
        mark = "MATCH" if v.matched else "-    "
        print(f"  {mark} {v.rule:<{width}}  {v.detail}{_percent(v)}  [{v.source}]", file=out)
    _print_result(result, out)
    head = plan.apply_head()
    if plan.terminal is None or isinstance(plan.terminal, MapRemote):
        print(f"  upstream request: {head.method} {head.url}", file=out)
        for name, value in head.fields:
            print(f"    {name.decode('latin-1')}: {value.decode('latin-1')}", file=out)
    if plan.faults:
        print(f"  faults: {plan.faults}", file=out)
    if plan.body_edits:
        print(f"  request body edits: {', '.join(a.summary() for a in plan.body_edits)}", file=out)
        _print_steps(result.request_steps, out)
    if result.response is not None:
        r = result.response
        if r.terminal is not None:
            print(f"  response replaced: {_terminal(r.terminal)}", file=out)
        edits = [a.summary() for a in r.head_edits + r.body_edits]
        if edits:
            print(f"  response edits: {', '.join(edits)}", file=out)
            _print_steps(result.response_steps, out)
    for w in plan.warnings + (result.response.warnings if result.response else ()):
        print(f"  warning: {w}", file=out)


def _percent(v: Verdict) -> str:
    """`` (acts on 50% of matching requests)`` for a matched ``percent`` rule."""
    if not v.matched or v.percent is None or v.percent >= 100:
        return ""
    return f" (acts on {v.percent:g}% of matching requests)"


def _print_result(result: Explanation, out: TextIO) -> None:
    """The outcome; with ``percent`` rules, the outcome when none of them acts too."""
    plan, otherwise = result.request, result.otherwise
    if otherwise is None:
        print(f"result: {_terminal(plan.terminal)}", file=out)
        return
    acts = result.chance * 100
    print(f"result ({acts:g}%: every matching percent rule acts): ", end="", file=out)
    print(_terminal(plan.terminal), file=out)
    print("result (when no percent rule acts): ", end="", file=out)
    acting = ", ".join(dict.fromkeys(h.rule for h in otherwise.hits))
    extra = f"; rules acting: {acting}" if acting else ""
    extra += f"; faults: {otherwise.faults}" if otherwise.faults else ""
    print(_terminal(otherwise.terminal) + extra, file=out)


#: Characters of a sample body shown after each edit.
SHOWN = 2000


def _print_steps(steps: tuple[EditStep, ...], out: TextIO) -> None:
    """The sample body after each edit (``--body`` / ``--response-body``)."""
    for step in steps:
        text = step.body.decode("utf-8", "backslashreplace")
        if len(text) > SHOWN:
            text = text[:SHOWN] + f"... ({len(step.body)} bytes)"
        if step.error is not None:
            print(f"    {step.edit}: not applied ({step.error}); body stays {text}", file=out)
        else:
            print(f"    after {step.edit}: {text}", file=out)


def _terminal(t: Terminal | None) -> str:
    if t is None:
        return "forward upstream"
    if isinstance(t, Respond):
        source = f" from {t.file}" if t.file else ""
        return f"{t.kind}: answer {t.status}{source} (rule '{t.rule}')"
    if isinstance(t, MapRemote):
        return f"map_remote to {t.url} (rule '{t.rule}')"
    assert isinstance(t, CloseConnection)
    return f"{t.kind} the connection (rule '{t.rule}')"


def _explain_tcp(rules: RuleSet, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    parts = urlsplit(args.request)
    if not parts.hostname or not parts.port:
        print("tapproxy rules explain: expected tcp://host:port", file=err)
        return 2
    plan = rules.fresh(rng=lambda: 0.0).tcp_for(parts.hostname, parts.port, args.mode, args.client)
    print(f"TCP {parts.hostname}:{parts.port}", file=out)
    for rule in rules.tcp_rules:
        mark = "MATCH" if rule.name in plan.matched else "-    "
        toxics = ", ".join(name for name, _ in rule.stages)
        directions = "/".join(sorted(rule.directions))
        print(f"  {mark} {rule.name}  {toxics} ({directions})  [{rule.source}]", file=out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
