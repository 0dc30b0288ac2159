"""What the proxy says at start: which rules, MitM and outputs are active.

One line after the "listening" lines, so a user sees at once whether the
rules they meant are loaded, whether HTTPS is being intercepted and where
the flows go (issue 14: a proxy that runs but captures nothing, or not what
was meant, must say so up front).
"""

from __future__ import annotations

import argparse

from proxy.cli.eventloop import LoopChoice, loop_name
from proxy.server.app import ServerOptions
from proxy.words import plural

__all__ = ["active_line"]

_SIDES = {
    "both": "client and upstream connections",
    "client": "client connections",
    "upstream": "upstream connections",
}


def active_line(args: argparse.Namespace, options: ServerOptions) -> str:
    """``tapproxy: active: rules r.yaml (4 rules); MitM off; flow log f.jsonl``."""
    parts = [_rules(args, options), _mitm(args, options), ", ".join(_outputs(args))]
    parts += _replay(args)
    if loop_name(LoopChoice(args.loop)) == "uvloop":
        parts.append("event loop uvloop")
    return "tapproxy: active: " + "; ".join(parts)


def _replay(args: argparse.Namespace) -> list[str]:
    """Server replay and addons, when on (docs/replay.md, docs/addons.md)."""
    out = []
    if args.server_replay:
        unmatched = "forwarded" if args.server_replay_extra == "forward" else "404"
        out.append(f"server replay from {', '.join(args.server_replay)} (unmatched: {unmatched})")
    if args.scripts:
        out.append(f"addons {', '.join(args.scripts)}")
    return out


def _rules(args: argparse.Namespace, options: ServerOptions) -> str:
    watcher = options.rules
    if watcher is None or not args.rules:
        return "no rules"
    return f"rules {', '.join(args.rules)} ({plural(len(watcher.current), 'rule')})"


def _mitm(args: argparse.Namespace, options: ServerOptions) -> str:
    intercept = options.intercept
    if intercept is None:
        return "MitM off"
    patterns = plural(len(intercept.policy.mitm_hosts), "host pattern")
    scope = "all hosts" if args.mitm else patterns
    ignored = intercept.policy.ignore_hosts
    if ignored:
        scope += f" except {plural(len(ignored), 'ignored pattern')}"
    return f"MitM on for {scope} (CA {intercept.ca_path})"


def _outputs(args: argparse.Namespace) -> list[str]:
    out = []
    if args.flow_log:
        out.append(f"flow log {'stdout' if args.flow_log == '-' else args.flow_log}")
    if args.har:
        out.append(f"HAR {'stdout' if args.har == '-' else args.har}")
    if args.pcap:
        out.append(f"PCAP {args.pcap} ({_SIDES[args.pcap_side]})")
    if args.capture_bodies:
        out.append(f"body files in {args.capture_bodies}")
    if args.save:
        out.append(f"recording {args.save}")
    return out or ["no flow log, HAR or PCAP output"]
