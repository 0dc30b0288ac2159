"""What happens inside a CONNECT tunnel we were asked to intercept.

After ``200 Connection established`` the client's first bytes decide:

* a TLS ClientHello: read SNI and ALPN; unless the host is ignored (by
  ``--ignore-hosts`` on ``sni:port`` or remembered as pinned), connect to the
  upstream with TLS first (to copy its certificate's names and check it;
  the names are remembered for ten minutes, so later connections to the
  same host skip this probe and their requests take a pooled upstream
  connection), then complete the client's handshake with a leaf for the
  same names and decode what flows as HTTP;
* something that looks like an HTTP request: decode it as HTTP to host:port;
* anything else, or nothing within a second (server-speaks-first
  protocols): relay the bytes untouched.

A client that aborts the handshake after seeing our certificate most likely
does not trust the CA or pins certificates; that is recorded plainly, and
with ``--auto-passthrough`` later connections to that host are relayed.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from dataclasses import replace
from typing import TYPE_CHECKING

from proxy.flow.record import TlsInfo, TlsSide
from proxy.server.upstream import UpstreamConnection, connect
from proxy.session.config import Upstream
from proxy.session.errors import UpstreamError
from proxy.session.http import HttpSession
from proxy.tls.clienthello import ClientHello, ClientHelloError, looks_like_tls, parse_client_hello
from proxy.tls.endpoint import TlsEndpoint, TlsHandshakeError
from proxy.tls.leaf import certificate_names
from proxy.tls.policy import CertNames

if TYPE_CHECKING:
    from proxy.server.client import ClientConnection

_HTTP_START = re.compile(rb"[A-Z]{3,10} ")
# Alerts by which a client says it does not accept our certificate (RFC 8446 §6.2).
REJECTION_ALERTS = frozenset(
    {
        "unknown_ca", "bad_certificate", "certificate_unknown", "unsupported_certificate",
        "certificate_expired", "certificate_revoked", "access_denied",
    }
)  # fmt: skip
_MAX_HELLO = 128 * 1024
SNIFF_TIMEOUT = 1.0


class Interceptor:
    def __init__(self, conn: ClientConnection, host: str, port: int) -> None:
        self.conn = conn
        self.host = host
        self.port = port
        self.buffer = bytearray()
        self.hello: ClientHello | None = None
        self.decided = False
        # True while we wait for the upstream (certificate probe): the client is
        # waiting for us then, so its handshake timeout does not run.
        self.probing = False
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(SNIFF_TIMEOUT, self._silent_client)

    # -- sniffing -------------------------------------------------------------
    def feed(self, data: bytes) -> None:
        """Client bytes before the decision."""
        self.buffer += data
        if self.decided or len(self.buffer) < 3:
            return
        data = bytes(self.buffer)
        if looks_like_tls(data):
            try:
                hello = parse_client_hello(data)
            except ClientHelloError:
                return self._decide_raw()
            if hello is None:
                if len(data) > _MAX_HELLO:
                    self._decide_raw()
                return None
            self.hello = hello
            return self._decide_tls()
        if _HTTP_START.match(data):
            return self._decide_http()
        return self._decide_raw()

    def _silent_client(self) -> None:
        if not self.decided:
            self._decide_raw()

    def _settle(self) -> bytes:
        self.decided = True
        self._timer.cancel()
        data = bytes(self.buffer)
        self.buffer.clear()
        return data

    def _decide_raw(self, tls: TlsInfo | None = None) -> None:
        self.conn.relay_intercepted(self.host, self.port, self._settle(), tls)

    def _decide_http(self) -> None:
        data = self._settle()
        session = self._nested_session(Upstream("http", self.host, self.port), None)
        self.conn.switch_session(session, data)

    def _decide_tls(self) -> None:
        hello = self.hello
        assert hello is not None
        sni = hello.sni
        ctx = self.conn.ctx
        name = sni or self.host
        offered = tuple(p.decode("latin-1") for p in hello.alpn_protocols)
        passthrough = ctx.intercept is None or not ctx.intercept.policy.intercept(name, self.port)
        if passthrough or (ctx.intercept is not None and (name, self.port) in ctx.intercept.pinned):
            side = TlsSide(sni=sni, offered_alpn=offered)
            return self._decide_raw(TlsInfo(False, client=side))
        assert ctx.intercept is not None  # else passthrough, above
        self._settle_keep()
        key = (self.host, self.port, name)
        known = ctx.intercept.upstream_names.get(key, time.monotonic())
        if known is not None:
            self._present(name, offered, known)
        else:
            asyncio.get_running_loop().create_task(self._probe_then_present(key, offered))
        return None

    def _settle_keep(self) -> None:
        self.decided = True
        self._timer.cancel()

    # -- TLS interception ---------------------------------------------------------
    async def _probe_then_present(
        self, key: tuple[str, int, str], offered: tuple[str, ...]
    ) -> None:
        upstream, known = await self._probe(key)
        if self.conn.closed:
            if upstream is not None:
                upstream.close()
            return
        if upstream is not None:
            self.conn.ctx.pool.put(upstream)  # for the first request
        self._present(key[2], offered, known)

    def _present(self, name: str, offered: tuple[str, ...], known: CertNames | None) -> None:
        """Complete the client's handshake with a leaf for ``name`` (and the upstream's names)."""
        ctx = self.conn.ctx
        assert ctx.intercept is not None
        extra, org = known if known is not None else ((), None)
        alpn = ("http/1.1",) if (not offered or "http/1.1" in offered) else ()
        try:
            server = ctx.intercept.issuer.server_tls(
                name, alpn=alpn, extra_sans=extra, organization=org
            )
        except ValueError:
            server = ctx.intercept.issuer.server_tls(self.host, alpn=alpn)
        tls = TlsEndpoint(server, sni=self.hello.sni if self.hello else None)
        self.conn.start_client_tls(tls, self, offered)
        self.conn.tls_data(bytes(self.buffer))
        self.buffer.clear()

    async def _probe(
        self, key: tuple[str, int, str]
    ) -> tuple[UpstreamConnection | None, CertNames | None]:
        """Connect upstream with TLS first: its certificate's names go into our leaf.

        The connection is pooled for the first request. On failure that request
        tries again and answers 502/504 naming why; nothing is remembered.
        """
        conn = self.conn
        ctx = conn.ctx
        assert ctx.intercept is not None
        upstream: UpstreamConnection | None = None
        self.probing = True  # the client waits for us: its handshake clock stops
        try:
            with contextlib.suppress(UpstreamError):
                upstream = await connect(key, ctx.timeouts.connect, ctx.upstream_tls, ctx.tap)
        finally:
            self.probing = False
            conn.last_active = time.monotonic()  # the client's handshake clock starts now
        if upstream is None or upstream.tls is None:
            return upstream, None
        der = upstream.tls.peer_certificate()
        if not der:
            return upstream, None
        try:
            extra, org = certificate_names(der)
        except ValueError:
            return upstream, None
        ctx.intercept.upstream_names.remember(key, extra, org, time.monotonic())
        return upstream, (extra, org)

    def handshake_done(self, tls: TlsEndpoint, offered: tuple[str, ...]) -> None:
        facts = tls.facts()
        side = TlsSide(
            version=facts.version,
            cipher=facts.cipher,
            alpn=facts.alpn,
            sni=facts.sni,
            offered_alpn=offered,
        )
        name = (self.hello.sni if self.hello else None) or self.host
        up = Upstream("https", self.host, self.port, sni=name)
        self.conn.switch_session(self._nested_session(up, side), b"")

    def handshake_failed(self, error: TlsHandshakeError | None, offered: tuple[str, ...]) -> None:
        """The client aborted the handshake: most likely it does not trust our CA.

        Only a certificate alert, or a close mid-handshake, counts as refusing
        our certificate (and may pin the host with --auto-passthrough); any
        other failure (garbage, a bad record) is logged as what it is.
        """
        ctx = self.conn.ctx
        assert ctx.intercept is not None
        name = (self.hello.sni if self.hello else None) or self.host
        side = TlsSide(sni=self.hello.sni if self.hello else None, offered_alpn=offered)
        if error is not None and error.alert not in REJECTION_ALERTS:
            message = f"TLS handshake with the client failed for {name}: {error}"
            self.conn.intercept_failed(message, TlsInfo(True, client=side))
            return
        how = (
            f"alert {error.alert}"
            if error is not None and error.alert
            else ("closed the connection during the handshake" if error is None else str(error))
        )
        message = (
            f"client rejected the proxy's certificate for {name} ({how}); "
            f"make it trust the CA ({ctx.intercept.ca_path}, or browse http://tapproxy.ca/ "
            f"through the proxy)"
        )
        if ctx.intercept.policy.auto_passthrough:
            ctx.intercept.pinned.add(name, self.port)
            message += "; later connections to this host will be passed through"
        self.conn.intercept_failed(message, TlsInfo(True, client=side))

    def _nested_session(self, upstream: Upstream, client_tls: TlsSide | None) -> HttpSession:
        conn = self.conn
        assert conn.session is not None
        outer = conn.session.config
        config = replace(
            outer, upstream=upstream, keep_host=True, intercept=None, client_tls=client_tls
        )
        return HttpSession(config, conn.session.client)


class ListenerSniffer(Interceptor):
    """A reverse listener with interception on: clients may speak TLS to it.

    A ClientHello is answered with a leaf for its SNI (or the upstream's
    name) and the decrypted requests go to the reverse upstream as usual;
    anything else is plain HTTP for the listener's own session. Clients
    always speak first here, so there is no silent-client rule.
    """

    def __init__(self, conn: ClientConnection) -> None:
        assert conn.session is not None and conn.session.config.upstream is not None
        up = conn.session.config.upstream
        super().__init__(conn, up.host, up.port)
        self._timer.cancel()

    def _decide_raw(self, tls: TlsInfo | None = None) -> None:
        session = self.conn.session
        assert session is not None
        self.conn.switch_session(session, self._settle())

    def _decide_http(self) -> None:
        self._decide_raw()

    def _decide_tls(self) -> None:
        hello = self.hello
        ctx = self.conn.ctx
        assert hello is not None and ctx.intercept is not None
        self._settle_keep()
        offered = tuple(p.decode("latin-1") for p in hello.alpn_protocols)
        self._present(hello.sni or self.host, offered, None)

    def handshake_done(self, tls: TlsEndpoint, offered: tuple[str, ...]) -> None:
        facts = tls.facts()
        side = TlsSide(facts.version, facts.cipher, facts.alpn, facts.sni, offered)
        session = self.conn.session
        assert session is not None
        nested = HttpSession(replace(session.config, client_tls=side), session.client)
        self.conn.switch_session(nested, b"")
