"""The command line's routing options: next-proxy credentials, bypass, client certificates.

``--upstream-auth USER:PASS`` goes to every ``upstream:URL`` mode that has
no credentials of its own; ``--upstream-bypass`` (else ``NO_PROXY`` /
``no_proxy`` from the environment, as curl reads it) lists hosts reached
directly; ``--client-certs FILE|DIR`` loads upstream client certificates,
checked now so a bad file stops the start with a clear message; an
``https://`` next proxy is verified like an upstream.
"""

from __future__ import annotations

import argparse
import os
import ssl
from dataclasses import replace
from pathlib import Path

from proxy.config import ConfigError
from proxy.server.app import ServerOptions
from proxy.session.routing import Bypass
from proxy.tls.client import client_context
from proxy.tls.clientcerts import ClientCertError, ClientCerts


def bypass_text(args: argparse.Namespace) -> str:
    if args.upstream_bypass is not None:
        return str(args.upstream_bypass)
    return os.environ.get("NO_PROXY") or os.environ.get("no_proxy") or ""


def with_routing(options: ServerOptions, args: argparse.Namespace) -> ServerOptions:
    """``options`` with the routing options of ``args``."""
    auth = args.upstream_auth
    if auth is not None and ":" not in auth:
        raise ConfigError("--upstream-auth takes USER:PASS")
    if auth is not None and not any(m.kind == "upstream" for m in options.modes):
        raise ConfigError("--upstream-auth needs a --mode upstream:URL")
    bypass = Bypass(bypass_text(args))
    certs = None
    if args.client_certs:
        cafile, insecure, keylog = args.upstream_ca, args.insecure, args.keylog
        try:
            certs = ClientCerts(
                Path(args.client_certs), lambda: client_context(cafile, insecure, keylog)
            )
        except ClientCertError as e:
            raise ConfigError(str(e)) from None
    return replace(
        options,
        upstream_auth=auth,
        bypass=bypass or None,
        client_certs=certs,
        proxy_tls=proxy_context(args.upstream_ca, args.insecure),
    )


def proxy_context(cafile: str | None, insecure: bool) -> ssl.SSLContext:
    """How an ``https://`` next proxy is verified: as upstreams are (``--upstream-ca``,
    ``--insecure``), for the name in its URL."""
    context = ssl.create_default_context(cafile=cafile)
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
