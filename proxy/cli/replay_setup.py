"""Wiring recording, server replay and addons into the proxy command.

Everything goes in through the existing seams: the recording is one more
sink (``make_sinks``), with capture turned on for every exchange; server
replay and addons are hook subscribers (``ServerOptions.hooks``), addons
first so that one may answer or change a request before the recordings are
asked. ``-r`` prints a file's flows through the console sink and exits (the
web UI that will also open them does not exist yet).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from typing import Any

from proxy.addons.host import AddonHost
from proxy.addons.loader import AddonError, Script
from proxy.config import ConfigError
from proxy.replay.format import FormatError, RecordedFlow
from proxy.replay.match import DEFAULT_HEADERS, MatchOptions, json_path
from proxy.replay.reader import load
from proxy.replay.server import ReplayOptions, ServerReplay, warn_truncated
from proxy.replay.toflow import flow_record
from proxy.replay.writer import RecordingSink, SaveFilter
from proxy.server.app import ServerOptions
from proxy.server.hooks import HookBus, HookSubscriber
from proxy.sinks.console import ConsoleSink
from proxy.sinks.dispatch import Sink
from proxy.words import plural


def load_flows(path: str) -> list[RecordedFlow]:
    """A file's flows for the proxy command; ConfigError says why it cannot be read."""
    try:
        loaded = load(path)
    except (OSError, FormatError) as e:
        raise ConfigError(f"cannot read {path}: {e}") from e
    if loaded.cut:
        print(
            f"tapproxy: {path}: the recording ends in a cut write (the proxy was stopped while "
            f"writing); {plural(len(loaded.flows), 'complete flow')} read",
            file=sys.stderr,
        )
    for problem in loaded.problems:
        print(f"tapproxy: {path}: skipped {problem}", file=sys.stderr)
    return loaded.flows


def match_options(args: argparse.Namespace) -> MatchOptions:
    use = args.server_replay_use_headers
    return MatchOptions(
        ignore_params=frozenset(args.server_replay_ignore_params),
        use_headers=tuple(h.lower() for h in use) if use else DEFAULT_HEADERS,
        ignore_headers=frozenset(h.lower() for h in args.server_replay_ignore_headers),
        ignore_json=tuple(json_path(p) for p in args.server_replay_ignore_json),
        ignore_host=args.server_replay_ignore_host,
    )


def server_replay(args: argparse.Namespace) -> ServerReplay | None:
    if not args.server_replay:
        return None
    flows = [f for path in args.server_replay for f in load_flows(path)]
    warn_truncated(flows, ", ".join(args.server_replay))
    options = ReplayOptions(
        match_options(args),
        reuse=args.server_replay_reuse,
        forward_unmatched=args.server_replay_extra == "forward",
        speed=args.server_replay_speed,
    )
    return ServerReplay(flows, options)


def addon_host(args: argparse.Namespace) -> AddonHost | None:
    if not args.scripts:
        return None
    try:
        scripts = [Script(path) for path in args.scripts]
    except AddonError as e:
        raise ConfigError(str(e)) from e
    options: dict[str, Any] = dict(vars(args))
    return AddonHost(scripts, options)


def with_replay(options: ServerOptions, args: argparse.Namespace) -> ServerOptions:
    """The server's options with recording, addons and server replay wired in."""
    subscribers: list[HookSubscriber] = list(options.hooks.subscribers)
    host = addon_host(args)
    if host is not None:
        subscribers.append(host)
    replay = server_replay(args)
    if replay is not None:
        subscribers.append(replay)
    intercept = options.intercept
    if replay is not None and not replay.options.forward_unmatched and intercept is not None:
        # Nothing may reach the network: no certificate probe before interception.
        intercept = replace(intercept, probe=False)
    session = options.session
    if args.save:
        session = replace(session, capture=replace(session.capture, record=True))
    return replace(options, session=session, hooks=HookBus(subscribers), intercept=intercept)


def recording_sink(args: argparse.Namespace, options: ServerOptions) -> Sink | None:
    if not args.save:
        return None
    filters: list[SaveFilter] = [
        sub.save for sub in options.hooks.subscribers if isinstance(sub, AddonHost)
    ]
    return RecordingSink(args.save, filters)


def read_and_print(args: argparse.Namespace) -> int:
    """``-r FILE``: each flow's console line (``-v`` adds headers), then a summary."""
    try:
        flows = load_flows(args.read)
    except ConfigError as e:
        print(f"tapproxy: {e}", file=sys.stderr)
        return 2
    sink = ConsoleSink(sys.stdout, verbose=args.verbose)
    sink.write_prepared(sink.prepare([flow_record(f) for f in flows]))
    print(f"tapproxy: {args.read}: {plural(len(flows), 'flow')}", file=sys.stderr)
    return 0
