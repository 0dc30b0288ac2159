"""The ``tapproxy`` command: run the proxy, or one of the subcommands.

Options follow mitmproxy's names so users' habits carry over. Subcommands
(``ca``, ``rules``, ``analyze``, ``sniff``, ``convert``) are dispatched on the first
argument to their own modules, each with its own ``--help``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import ipaddress
import re
import signal
import sqlite3
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from OpenSSL import SSL

from proxy.cli.args import build_parser, preview_bytes
from proxy.cli.eventloop import LoopChoice, loop_factory
from proxy.cli.grpc_args import grpc_settings
from proxy.cli.preflight import check_outputs
from proxy.cli.replay_setup import read_and_print, recording_sink, with_replay
from proxy.cli.routing_setup import with_routing
from proxy.cli.startup import active_line
from proxy.cli.view_filter import record_predicate
from proxy.cli.web_args import check_web_args
from proxy.cli.workers import check_shareable, prepare_shared_outputs, run_workers
from proxy.cli.ws_args import ws_settings
from proxy.config import ConfigError, ModeSpec, parse_modes
from proxy.http1 import Limits
from proxy.rules import RulesError, RulesWatcher
from proxy.server.app import ProxyServer, ServerOptions
from proxy.server.context import InterceptContext, Timeouts
from proxy.session.auth import expected_credentials
from proxy.session.capture import CaptureBudget, CaptureConfig
from proxy.session.config import SessionConfig
from proxy.sinks.bodies import BodyFileSink
from proxy.sinks.console import ConsoleSink
from proxy.sinks.dispatch import Dispatcher, Sink
from proxy.sinks.encoded import EncodedRecords
from proxy.sinks.har import HarSink
from proxy.sinks.har_shared import SharedHarSink
from proxy.sinks.jsonl import JsonlSink
from proxy.sinks.pcap import PcapTap
from proxy.tls.ca import CA_CERT_PEM, CAError, CertificateAuthority, default_certs_dir
from proxy.tls.client import client_context
from proxy.tls.endpoint import describe_ssl_error
from proxy.tls.leaf import LeafIssuer
from proxy.tls.policy import InterceptPolicy, PassthroughMemory
from proxy.words import plural

if TYPE_CHECKING:
    from proxy.cli.web_setup import WebUi

SUBCOMMANDS = {
    "ca": "proxy.cli.ca_cmd",
    "rules": "proxy.cli.rules_cmd",
    "analyze": "proxy.cli.analyze_cmd",
    "sniff": "proxy.cli.sniff_cmd",
    "convert": "proxy.cli.convert_cmd",
    "replay": "proxy.cli.replay_cmd",
}


def upstream_tls_context(cafile: str | None, insecure: bool, keylog: str | None) -> SSL.Context:
    if insecure:
        print(
            "tapproxy: warning: upstream certificates are NOT verified (--insecure)",
            file=sys.stderr,
        )
    try:
        return client_context(cafile, insecure, keylog)
    except SSL.Error as e:
        what = f"--upstream-ca {cafile}" if cafile else "the system's trusted certificates"
        raise ConfigError(f"{what}: cannot load certificates ({describe_ssl_error(e)})") from e


def intercept_context(args: argparse.Namespace) -> InterceptContext | None:
    """Load or create the CA and build the policy when interception is on."""
    try:
        policy = InterceptPolicy.build(
            args.mitm, args.mitm_hosts, args.ignore_hosts, args.auto_passthrough
        )
    except re.error as e:
        raise ConfigError(f"bad host pattern: {e}") from e
    if not policy.enabled:
        return None
    directory = Path(args.certs) if args.certs else default_certs_dir()
    existed = (directory / CA_CERT_PEM).exists()
    try:
        ca = CertificateAuthority.load_or_create(directory)
    except CAError as e:
        raise ConfigError(str(e)) from e
    if not existed:
        print(
            f"tapproxy: created a new CA in {directory}; make clients trust {ca.cert_path} "
            "(or browse http://tapproxy.ca/ through the proxy). See docs/tls.md.",
            file=sys.stderr,
        )
    issuer = LeafIssuer(ca, key_type=args.leaf_key, keylog_filename=args.keylog)
    return InterceptContext(policy, issuer, PassthroughMemory(), str(ca.cert_path))


def options_from_args(args: argparse.Namespace) -> ServerOptions:
    modes = parse_modes(args.mode, args.listen_host, args.listen_port)
    timeouts = Timeouts(**{k[2:]: v for k, v in vars(args).items() if k.startswith("t_")})
    check_open_proxy(modes, args.proxy_auth, args.allow_open_proxy)
    limits = Limits(
        max_head=args.max_head_size,
        max_line=args.max_request_line,
        max_fields=args.max_header_count,
        max_chunk_line=args.max_chunk_line,
    )
    session = SessionConfig(
        preview_bytes=preview_bytes(args),
        keep_host=args.keep_host_header,
        max_body=args.max_body,
        keylog=bool(args.keylog),
        http2=not args.no_http2,
        limits=limits,
        capture=CaptureConfig(
            args.capture_bodies, args.capture_max_body, CaptureBudget(args.capture_max_total)
        ),
        proxy_auth=expected_credentials(args.proxy_auth) if args.proxy_auth else None,
        grpc=grpc_settings(args, modes),
        websocket=ws_settings(args),
    )
    options = ServerOptions(
        modes=modes,
        session=session,
        timeouts=timeouts,
        upstream_tls=upstream_tls_context(args.upstream_ca, args.insecure, args.keylog),
        intercept=intercept_context(args),
        # With --workers each worker opens its own tap after the fork (run_one).
        tap=PcapTap(args.pcap, args.pcap_side) if args.pcap and args.workers == 1 else None,
        rules=load_rules_watcher(args),
        max_connections=args.max_connections,
    )
    return with_routing(options, args)


def check_open_proxy(modes: list[ModeSpec], proxy_auth: str | None, allowed: bool) -> None:
    """Refuse to be an open forward proxy by accident (safe defaults)."""
    if proxy_auth is not None:
        if ":" not in proxy_auth:
            raise ConfigError("--proxy-auth takes USER:PASS")
        return
    if allowed:
        return
    for mode in modes:
        if mode.kind in ("regular", "upstream", "socks5") and not is_loopback(mode.host):
            raise ConfigError(
                f"refusing to run an open forward proxy on {mode.host}:{mode.port}: anyone who "
                "can reach it could use it. Add --proxy-auth USER:PASS, listen on 127.0.0.1, "
                "or pass --allow-open-proxy if you really mean it."
            )


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def load_rules_watcher(args: argparse.Namespace) -> RulesWatcher | None:
    """Load --rules now: a broken file at start is an error (file:line:column)."""
    if not args.rules:
        return None
    try:
        return RulesWatcher([Path(p) for p in args.rules], max_body=args.max_body)
    except RulesError as e:
        raise ConfigError(f"cannot load rules:\n{e}") from e


def make_sinks(
    args: argparse.Namespace,
    options: ServerOptions | None = None,
    encoded: EncodedRecords | None = None,
) -> list[Sink]:
    """The outputs the options ask for; ``encoded``: the JSON of each batch,
    shared by the flow log and the web UI's store (encoded once for both)."""
    sinks: list[Sink] = []
    only = record_predicate(args.view_filter)
    if args.flow_log == "-" and args.har == "-":
        print("tapproxy: --flow-log and --har cannot both write to stdout", file=sys.stderr)
        raise SystemExit(2)
    if args.flow_log:
        shared = args.workers > 1  # several processes rotate one log: under a lock
        sinks.append(
            JsonlSink(
                args.flow_log,
                args.flow_log_max_size,
                args.flow_log_keep,
                shared=shared,
                only=only,
                encoded=encoded,
            )
        )
    if args.har:
        sinks.append(SharedHarSink(args.har) if args.workers > 1 else HarSink(args.har))
    if args.capture_bodies or args.rules:  # rules may capture bodies too
        sinks.append(BodyFileSink())
    recording = recording_sink(args, options) if options is not None else None
    if recording is not None:
        sinks.append(recording)
    if not args.quiet:
        stream = sys.stderr if "-" in (args.flow_log, args.har) else sys.stdout
        sinks.append(ConsoleSink(stream, verbose=args.verbose, only=only))
    return sinks


#: Allocations between young-generation collections (CPython's default: 700).
GC_YOUNG_THRESHOLD = 10_000


def tune_gc() -> None:
    """Fewer cyclic-GC passes on the data path; startup objects never rescanned.

    An exchange allocates about a hundred container objects that reference
    counting frees (few cycles), so the default threshold ran a young
    collection every few requests: 6% of the CPU per request in scenario a
    (bench/). Cyclic garbage still goes, after at most 10,000 allocations.
    ``gc.freeze`` moves what startup made (modules, config, CA) out of the
    collector's way for good.
    """
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])


async def serve(
    options: ServerOptions,
    dispatcher: Dispatcher,
    shutdown_timeout: float,
    announce: bool = True,
    active: str | None = None,
    web: WebUi | None = None,
) -> int:
    server = ProxyServer(options, dispatcher)
    await server.start()
    web_line = await web.start(server) if web is not None else None
    tune_gc()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    # Handlers first: a signal sent once "listening" is printed must find them.
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, server.print_stats)
    for mode, (host, port) in zip(options.modes, server.addresses, strict=True):
        if announce:
            print(
                f"tapproxy: {mode.label} proxy listening at {host}:{port}",
                file=sys.stderr,
                flush=True,
            )
    if announce and active:
        print(active, file=sys.stderr, flush=True)
    if web_line:
        print(web_line, file=sys.stderr, flush=True)
    await stop.wait()
    print("tapproxy: shutting down", file=sys.stderr, flush=True)
    if web is not None:
        await web.stop()  # held flows go on; the UI's connections close
    cut = await server.shutdown(shutdown_timeout)
    if cut:
        print(
            f"tapproxy: {plural(cut, 'connection')} cut at the shutdown deadline", file=sys.stderr
        )
    return 0


def web_ui(args: argparse.Namespace) -> WebUi | None:
    """The web UI's parts, with ``--web`` (its modules are imported only then)."""
    if not args.web:
        return None
    from proxy.cli.web_setup import WebUi
    from proxy.web.storedb import StoreError

    try:
        return WebUi(args)
    except (OSError, sqlite3.Error, StoreError) as e:
        raise ConfigError(f"cannot open the web UI's store: {e}") from e


def report_losses(dispatcher: Dispatcher, tap: PcapTap | None) -> None:
    """The exit summary of what failing outputs lost (nothing when none failed)."""
    lost = dispatcher.loss_summary() + (tap.loss_summary() if tap is not None else [])
    if lost:
        print(f"tapproxy: lost because an output failed: {', '.join(lost)}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in SUBCOMMANDS:
        module = importlib.import_module(SUBCOMMANDS[argv[0]])
        code: int = module.main(argv[1:])
        return code
    args = build_parser().parse_args(argv)
    if args.read and not args.web:
        return read_and_print(args)
    try:
        check_shareable(args)
        check_outputs(args)
        options = with_replay(options_from_args(args), args)
        check_web_args(args, is_loopback(args.web_host))
        web = web_ui(args)
        if web is not None:
            options = web.wire(options)
            if args.read:
                loaded = web.preload(args.read)
                print(f"tapproxy: {args.read}: {plural(loaded, 'flow')} loaded", file=sys.stderr)
        active = active_line(args, options)
        new_loop = loop_factory(LoopChoice(args.loop))
    except (ConfigError, OSError) as e:
        print(f"tapproxy: {e}", file=sys.stderr)
        return 2

    def run_one(options: ServerOptions, announce: bool) -> int:
        if args.workers > 1 and args.pcap:  # a writer thread of this worker's own
            options = replace(options, tap=PcapTap(args.pcap, args.pcap_side, shared=True))
        encoded = EncodedRecords()
        sinks = make_sinks(args, options, encoded)
        if web is not None:
            sinks.append(web.sink(encoded))
        dispatcher = Dispatcher(sinks)  # its thread starts in this process
        try:
            with asyncio.Runner(loop_factory=new_loop) as runner:
                return runner.run(
                    serve(options, dispatcher, args.shutdown_timeout, announce, active, web)
                )
        except ConfigError as e:
            print(f"tapproxy: {e}", file=sys.stderr)
            return 2
        except OSError as e:
            print(f"tapproxy: {e}", file=sys.stderr)
            return 1
        finally:
            dispatcher.close()
            report_losses(dispatcher, options.tap)

    if args.workers > 1:
        prepare_shared_outputs(args)
        return run_workers(args.workers, options, run_one)
    return run_one(options, True)
