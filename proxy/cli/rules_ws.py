"""``tapproxy rules explain FILE ws://host/path --message TEXT``: the WebSocket rules.

Shows, for one message in one direction, which ``websocket:`` rules apply to
the connection (host and path), which match the message, and the verdict:
the message as it would be forwarded, dropped, delayed, what is injected,
and a close. The ``when: open`` injections of the connection are listed too.
"""

from __future__ import annotations

import argparse
from typing import TextIO
from urllib.parse import urlsplit

from proxy.rules import RuleSet


def explain_ws(rules: RuleSet, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    parts = urlsplit(args.request)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        print("tapproxy rules explain: expected ws://host/path or wss://host/path", file=err)
        return 2
    path = parts.path or "/"
    plan = rules.fresh(rng=lambda: 0.0).ws_for(parts.hostname, path)
    direction = args.direction
    text = not args.binary
    payload = args.message.encode("utf-8")
    print(f"WebSocket {parts.hostname}{path}: {direction} {'text' if text else 'binary'}", file=out)
    verdict = plan.decide(direction, text, payload)
    for rule in rules.ws_rules:
        if rule not in plan.rules:
            mark = "-    "
            why = " (other host or path)"
        elif rule.inject is not None and rule.inject.on == "open":
            mark, why = "OPEN ", ""
        else:
            mark = "MATCH" if rule.name in verdict.rules else "-    "
            why = ""
        print(f"  {mark} {rule.name}  {', '.join(rule.actions)}{why}  [{rule.source}]", file=out)
    if verdict.drop:
        print("result: dropped", file=out)
    elif verdict.payload is not None:
        print(f"result: forwarded as {verdict.payload.decode('utf-8', 'replace')!r}", file=out)
    else:
        print("result: forwarded unchanged", file=out)
    if verdict.delay_ms:
        print(f"  delayed {verdict.delay_ms:g} ms", file=out)
    for inject in verdict.injects:
        print(f"  then injects {inject.payload!r} to the {inject.to}", file=out)
    if verdict.close is not None:
        print(f"  then closes with {verdict.close[0]} {verdict.close[1]!r}", file=out)
    for note in verdict.notes:
        print(f"  note: {note}", file=out)
    return 0
