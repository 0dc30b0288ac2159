"""The web UI's options (``--web``, docs/api.md)."""

from __future__ import annotations

import argparse

from proxy.config import ConfigError
from proxy.sinks.rotate import size_arg

DEFAULT_PORT = 8081
DEFAULT_MAX_FLOWS = 100_000
DEFAULT_MAX_STORE = "1G"
DEFAULT_HOLD_TIMEOUT = 300.0


def add_web_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("web UI and admin API (docs/api.md)")
    g.add_argument(
        "--web",
        action="store_true",
        help="serve the web UI and admin API (the address and token are printed at start)",
    )
    g.add_argument("--web-host", default="127.0.0.1", help="the UI's address (default 127.0.0.1)")
    g.add_argument(
        "--web-port", type=int, default=DEFAULT_PORT, help=f"the UI's port (default {DEFAULT_PORT})"
    )
    g.add_argument(
        "--web-token",
        metavar="TOKEN",
        help="the token every page and API call needs (default: a new random one each start); "
        "required with a --web-host beyond loopback",
    )
    g.add_argument(
        "--web-store",
        metavar="FILE",
        help="keep the UI's flows in this SQLite file (default: a temporary file, deleted at exit)",
    )
    g.add_argument(
        "--web-max-flows",
        type=int,
        default=DEFAULT_MAX_FLOWS,
        metavar="N",
        help=f"flows the UI keeps; the oldest go first (default {DEFAULT_MAX_FLOWS:,})",
    )
    g.add_argument(
        "--web-max-store-size",
        type=size_arg,
        default=size_arg(DEFAULT_MAX_STORE),
        metavar="SIZE",
        help=f"bytes the UI's store may hold, bodies included (default {DEFAULT_MAX_STORE})",
    )
    g.add_argument(
        "--web-hold-timeout",
        type=float,
        default=DEFAULT_HOLD_TIMEOUT,
        metavar="SECONDS",
        help="a flow held at a breakpoint goes on unchanged after this long (default 300)",
    )


def check_web_args(args: argparse.Namespace, is_loopback: bool) -> None:
    """Safe defaults: beyond loopback only with a token the user chose."""
    if not args.web:
        return
    if not is_loopback and not args.web_token:
        raise ConfigError(
            f"refusing to serve the web UI on {args.web_host} without --web-token: anyone who "
            "can reach it could read and change your traffic. Choose a token, or use 127.0.0.1."
        )
    if args.web_token is not None and len(args.web_token) < 8:
        raise ConfigError("--web-token must be at least 8 characters")
    if args.workers > 1:
        raise ConfigError("--web serves one process's flows: use it without --workers")
    if args.web_max_flows < 1:
        raise ConfigError("--web-max-flows must be at least 1")
    if args.web_hold_timeout <= 0:
        raise ConfigError("--web-hold-timeout must be more than 0 seconds")
