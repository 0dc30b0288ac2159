"""The proxy command's options (``tapproxy --help``).

Names follow mitmproxy's where one exists, so users' habits carry over.
Only the definitions live here; :mod:`proxy.cli.main` turns the parsed
namespace into the server's configuration.
"""

from __future__ import annotations

import argparse
import os

from proxy import __version__
from proxy.cli.grpc_args import add_grpc_options
from proxy.cli.replay_args import add_replay_options
from proxy.cli.view_filter import FilterAction
from proxy.cli.web_args import add_web_options
from proxy.cli.ws_args import add_ws_options
from proxy.http1 import DEFAULT_LIMITS
from proxy.server.context import Timeouts
from proxy.sinks.rotate import count_arg, size_arg

__all__ = ["build_parser"]

EPILOG = """\
modes (repeatable, each optionally suffixed @[host:]port):
  regular                    forward proxy (the default)
  reverse:http://host:port   reverse proxy to a fixed upstream
  tcp:host:port              raw TCP relay to a fixed upstream
  upstream:URL               forward proxy whose traffic goes through a next proxy at URL:
                             http[s]://host:port or socks5://host:port (--upstream-auth,
                             --upstream-bypass; per host: rules' route)
  socks5                     SOCKS5 listener (RFC 1928; --proxy-auth for RFC 1929)
  transparent[:tproxy]       connections redirected by iptables/nftables REDIRECT (or TPROXY)
  e.g. --mode regular@8080 --mode reverse:http://127.0.0.1:9000@8081

subcommands:
  tapproxy ca {path,export,regenerate}   the local certificate authority
  tapproxy rules {check,explain}         validate and explain rule files
  tapproxy analyze CAPTURE               decode a pcap/pcapng capture into flow records
  tapproxy sniff -i IFACE [--filter EXPR] capture live traffic into flow records (needs root)
  tapproxy convert FLOWS.jsonl --to har  convert a flow log to HAR 1.2 (-o FILE)
  tapproxy convert IN --to recording|har|flowlog  between recordings, HAR and flow logs
  tapproxy replay FILE --to URL          send recorded requests again and report differences
"""


#: ``--body-preview`` by default: enough to recognise a body in a flow record.
DEFAULT_PREVIEW = 256
#: ``--body-preview`` by default with ``--har``: DevTools users expect to see
#: bodies, and most API responses and pages fit (docs/har.md); larger ones
#: need ``--capture-bodies``.
HAR_PREVIEW = 64 * 1024


def preview_bytes(args: argparse.Namespace) -> int:
    """The preview size: ``--body-preview`` if given, else the default for the outputs."""
    if args.body_preview is not None:
        return max(0, int(args.body_preview))
    return HAR_PREVIEW if args.har else DEFAULT_PREVIEW


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tapproxy",
        description="An intercepting HTTP/TCP proxy.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"tapproxy {__version__}")
    g = p.add_argument_group("listening")
    g.add_argument(
        "--listen-host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)"
    )
    g.add_argument(
        "--listen-port", "-p", type=int, default=8080, help="port to listen on (default 8080)"
    )
    g.add_argument(
        "--mode",
        "-m",
        action="append",
        default=[],
        metavar="MODE",
        help="regular, reverse:URL, tcp:HOST:PORT, upstream:URL, socks5 or transparent, "
        "optionally @[host:]port; repeatable (docs/modes.md)",
    )
    g.add_argument(
        "--keep-host-header",
        action="store_true",
        help="reverse mode: forward the client's Host instead of the upstream's",
    )
    g.add_argument(
        "--no-http2",
        action="store_true",
        help="speak HTTP/1.1 only: no h2 in ALPN, no h2c (prior knowledge or Upgrade)",
    )
    o = p.add_argument_group("output")
    o.add_argument("-q", "--quiet", action="store_true", help="no console line per flow")
    o.add_argument("-v", "--verbose", action="store_true", help="add headers to the console line")
    o.add_argument(
        "--view-filter",
        action=FilterAction,
        metavar="EXPR",
        help="only flows matching EXPR reach the console and the flow log (docs/filters.md)",
    )
    o.add_argument(
        "--flow-log", metavar="FILE", help="append JSON Lines flow records to FILE ('-' = stdout)"
    )
    o.add_argument(
        "--flow-log-max-size",
        type=size_arg,
        metavar="SIZE",
        help="rotate the flow log before it would exceed SIZE bytes (K/M/G suffixes, e.g. 10M)",
    )
    o.add_argument(
        "--flow-log-keep",
        type=count_arg,
        default=5,
        metavar="N",
        help="rotated flow logs kept: FILE.1 ... FILE.N (default 5)",
    )
    o.add_argument(
        "--har",
        metavar="FILE",
        help="write HTTP flows to FILE as HAR 1.2, valid after every batch (see docs/har.md)",
    )
    o.add_argument(
        "--body-preview",
        type=int,
        default=None,
        metavar="N",
        help=f"bytes of each body kept as a preview in flow records (default {DEFAULT_PREVIEW}, "
        f"{HAR_PREVIEW // 1024}K with --har: see docs/har.md)",
    )
    o.add_argument(
        "--capture-bodies",
        metavar="DIR",
        help="write bodies longer than the preview to files in DIR, named in the record",
    )
    o.add_argument(
        "--capture-max-body",
        type=size_arg,
        default=10 * 1024 * 1024,
        metavar="SIZE",
        help="per body file: only the first SIZE bytes (default 10M)",
    )
    o.add_argument("--capture-max-total", type=size_arg, default=1024**3, metavar="SIZE",
                   help="all body files together (default 1G); beyond, no more files")  # fmt: skip
    o.add_argument(
        "--pcap",
        metavar="FILE",
        help="write what the proxy relayed (decrypted) as pcapng for Wireshark",
    )
    o.add_argument("--pcap-side", choices=["both", "client", "upstream"], default="both",
                   help="which connections go into --pcap (default both)")  # fmt: skip
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="N processes sharing the listening ports (SO_REUSEPORT); default 1",
    )
    p.add_argument(
        "--loop",
        choices=["auto", "asyncio", "uvloop"],
        default="auto",
        help="event loop: uvloop when installed (auto, the default), or force one",
    )
    s = p.add_argument_group("access and limits (docs/limits.md)")
    s.add_argument(
        "--proxy-auth",
        metavar="USER:PASS",
        help="require Basic proxy authentication (answered with 407)",
    )
    s.add_argument(
        "--allow-open-proxy",
        action="store_true",
        help="allow listening beyond loopback without --proxy-auth (not recommended)",
    )
    s.add_argument(
        "--max-connections",
        type=int,
        default=10_000,
        metavar="N",
        help="client connections at once; beyond, the newest gets 503 (default 10000)",
    )
    s.add_argument(
        "--max-head-size",
        type=size_arg,
        default=DEFAULT_LIMITS.max_head,
        metavar="SIZE",
        help="largest request/response head (431/502 beyond; default 64K)",
    )
    s.add_argument(
        "--max-header-count",
        type=int,
        default=DEFAULT_LIMITS.max_fields,
        metavar="N",
        help="most header fields in a head (default 200)",
    )
    s.add_argument(
        "--max-request-line",
        type=size_arg,
        default=DEFAULT_LIMITS.max_line,
        metavar="SIZE",
        help="longest request line (414 beyond; default 16K)",
    )
    s.add_argument(
        "--max-chunk-line",
        type=size_arg,
        default=DEFAULT_LIMITS.max_chunk_line,
        metavar="SIZE",
        help="longest chunk-size line with extensions (default 4K)",
    )
    u = p.add_argument_group("upstream")
    u.add_argument(
        "--upstream-ca", metavar="FILE", help="extra CA bundle to verify HTTPS upstreams"
    )
    u.add_argument("--insecure", action="store_true", help="do not verify upstream certificates")
    u.add_argument(
        "--upstream-auth",
        metavar="USER:PASS",
        help="credentials for the next proxy of --mode upstream:URL (Basic, or SOCKS5 RFC 1929)",
    )
    u.add_argument(
        "--upstream-bypass",
        metavar="HOSTS",
        default=None,
        help="hosts reached directly, not through the next proxy: NO_PROXY syntax "
        "(example.com, .corp, 10.0.0.0/8, host:port, *); default: $NO_PROXY",
    )
    u.add_argument(
        "--client-certs",
        metavar="FILE|DIR",
        help="client certificate (PEM with key) for upstream mTLS; a DIR holds HOST.pem per SNI",
    )
    r = p.add_argument_group("rules")
    r.add_argument(
        "--rules",
        action="append",
        default=[],
        metavar="PATH",
        help="YAML rules file, or a directory of *.yaml (repeatable; reloaded on change)",
    )
    r.add_argument(
        "--max-body",
        type=size_arg,
        default=10 * 1024 * 1024,
        metavar="SIZE",
        help="largest body buffered for rules (default 10M); larger ones stream untouched",
    )
    m = p.add_argument_group("TLS interception")
    m.add_argument(
        "--mitm", action="store_true", help="intercept TLS in CONNECT tunnels for all hosts"
    )
    m.add_argument(
        "--mitm-hosts",
        action="append",
        default=[],
        metavar="REGEX",
        help="intercept only host:port matching REGEX (repeatable)",
    )
    m.add_argument(
        "--ignore-hosts",
        action="append",
        default=[],
        metavar="REGEX",
        help="never intercept host:port matching REGEX: relay it untouched (repeatable)",
    )
    m.add_argument(
        "--auto-passthrough",
        action="store_true",
        help="after a client rejects our certificate for a host, relay that host untouched",
    )
    m.add_argument(
        "--certs",
        metavar="DIR",
        help="CA directory (default: ./certs in a checkout, "
        "else ~/.config/tapproxy; see docs/tls.md)",
    )
    m.add_argument(
        "--leaf-key",
        choices=["ec", "rsa"],
        default="ec",
        help="leaf key type: ec (P-256, fast, default) or rsa (2048, for old clients)",
    )
    m.add_argument(
        "--keylog",
        metavar="FILE",
        default=os.environ.get("SSLKEYLOGFILE"),
        help="append NSS key-log lines for both sides (default: $SSLKEYLOGFILE)",
    )
    add_replay_options(p)
    add_grpc_options(p)
    add_ws_options(p)
    add_web_options(p)
    t = p.add_argument_group("timeouts (seconds)")
    for name, default in Timeouts().__class__.__dataclass_fields__.items():
        t.add_argument(
            f"--{name.replace('_', '-')}-timeout",
            type=float,
            dest=f"t_{name}",
            default=default.default,
            help=f"default {default.default:g}",
        )
    t.add_argument(
        "--shutdown-timeout",
        type=float,
        default=10.0,
        help="on SIGINT/SIGTERM, how long in-flight exchanges may take (default 10)",
    )
    return p  # fmt: skip
