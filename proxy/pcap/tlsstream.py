"""One TLS connection from a capture: handshake facts, and decryption with a key log.

``TlsStream`` is the connection analyzer's mode for streams that start with a
TLS handshake record. Each direction's bytes are cut into records
(``proxy.pcap.tlsrecord``); plaintext handshake messages give the client
random, SNI, offered ALPN, the ServerHello's version and suite and (TLS 1.2)
the server certificate (``proxy.pcap.tlshandshake``).

When a key log (``proxy.pcap.keylog``) holds the connection's secrets, the
protected records are opened (``proxy.pcap.tlskeys``):

* TLS 1.2: from the ChangeCipherSpec a side sends on (RFC 5246 §7.1), with
  the key block from the ``CLIENT_RANDOM`` master secret. Resumed sessions
  (session ID or ticket) are the same: the key log has the master secret
  under the resumed connection's own client random.
* TLS 1.3: from the ServerHello on, under the handshake traffic secrets; a
  side switches to its application traffic secret after its Finished
  (RFC 8446 §4.4.4) and to the next one after each KeyUpdate it sends
  (§4.6.3, §7.2). A HelloRetryRequest (§4.1.4) is recognised and the real
  ServerHello awaited. PSK resumption needs nothing else: the key log has the
  traffic secrets. 0-RTT data is not decrypted: records that fail under the
  client handshake keys while early data was offered are skipped, as a server
  that rejected it does (§4.2.10), with a note.

Decrypted application data goes to ``proxy.pcap.tlsapp`` (HTTP/1.x for ALPN
"http/1.1" or none, HTTP/2 for "h2"; other protocols are noted, not decoded).
The connection's ``"tls"`` record is emitted at the end in every case.

Failure is contained per direction: a malformed record, a tag that does not
verify or a capture gap stops reading that direction, with an error on the
connection's record (and on the HTTP exchange in progress); nothing raises
out of here. Memory per direction: one partial record, one partial handshake
message, and before the ServerHello at most ``PENDING_LIMIT`` bytes of the
client's protected records.
"""

from __future__ import annotations

import enum

from proxy.pcap.keylog import KeyLog, Label
from proxy.pcap.records import CapturedExchange, TlsFacts
from proxy.pcap.tlsapp import Connection, TlsApplication
from proxy.pcap.tlshandshake import (
    Certificate,
    ClientHelloFacts,
    HandshakeError,
    parse_certificate,
    parse_client_hello_body,
    parse_encrypted_extensions,
    parse_server_hello,
)
from proxy.pcap.tlskeys import (
    SUITES,
    CipherSuite,
    DecryptError,
    Decryptor,
    keys12,
    next_secret13,
    traffic_keys13,
)
from proxy.pcap.tlsrecord import (
    MAX_CIPHERTEXT,
    ContentType,
    HandshakeReader,
    HandshakeType,
    Record,
    RecordReader,
)

PENDING_LIMIT = 2 * (MAX_CIPHERTEXT + 5)  # client records held until the ServerHello
TLS12, TLS13 = 0x0303, 0x0304
_VERSION_NAMES = {0x0301: "TLSv1", 0x0302: "TLSv1.1", TLS12: "TLSv1.2", TLS13: "TLSv1.3"}


class Phase(enum.Enum):
    PLAIN = 1  # records in the clear (hellos, TLS 1.2 handshake)
    HANDSHAKE = 2  # TLS 1.3: under the handshake traffic secret
    APPLICATION = 3  # under application traffic keys
    OPAQUE = 4  # cannot (or need not) be read further: bytes are only counted


class _Side:
    """One direction's reading state."""

    __slots__ = ("client", "decryptor", "handshake", "name", "phase", "records", "secret")

    def __init__(self, client: bool) -> None:
        self.client = client
        self.name = "client" if client else "server"
        self.records = RecordReader()
        self.handshake = HandshakeReader()
        self.phase = Phase.PLAIN
        self.decryptor: Decryptor | None = None
        self.secret = b""  # TLS 1.3: the current traffic secret

    @property
    def readable(self) -> bool:
        return self.phase is not Phase.OPAQUE


class TlsStream:
    """A TLS connection's mode in ``proxy.pcap.streams.ConnectionAnalyzer``."""

    def __init__(self, conn: Connection, start: float, keylog: KeyLog | None, preview: int) -> None:
        self.conn = conn
        self.client, self.server, self.connection = conn.client, conn.server, conn.connection
        self.start = start
        self.keylog = keylog
        self.up = self.down = 0
        self.c, self.s = _Side(True), _Side(False)
        self.hello: ClientHelloFacts | None = None
        self.version: int | None = None
        self.suite: CipherSuite | None = None
        self.suite_code: int | None = None
        self.server_random = b""
        self.alpn: str | None = None
        self.cert: Certificate | None = None
        self.decrypted = False
        self.errors: list[str] = []
        self.pending: list[Record] = []
        self.pending_size = 0
        self.app = TlsApplication(conn, preview, self.facts, self.errors)
        self.early_skipped = False

    # -- the connection analyzer's mode interface ---------------------------------------
    def data(self, from_client: bool, ts: float, data: bytes) -> None:
        side = self.c if from_client else self.s
        if from_client:
            self.up += len(data)
        else:
            self.down += len(data)
        if side.phase is Phase.OPAQUE:
            return
        reader = side.records
        for record in reader.feed(data):
            if not side.readable:
                return
            self._record(side, ts, record)
        if reader.error is not None and side.readable:
            self._stop(side, ts, f"{side.name} stream is not TLS records: {reader.error}")

    def gap(self, from_client: bool, ts: float, size: int) -> None:
        side = self.c if from_client else self.s
        if side.phase is Phase.OPAQUE:
            self.errors.append(f"{size} bytes missing from the {side.name} stream (capture gap)")
            return
        if from_client and self.hello is None:
            self.errors.append("ClientHello incomplete")
        self._stop(side, ts, f"{size} bytes missing from the {side.name} stream (capture gap)")

    def fin(self, from_client: bool, ts: float) -> None:
        self.app.fin(from_client, ts)

    def close(self, ts: float, reason: str) -> None:
        self.app.close(ts, reason)
        if self.hello is None and self.up and not self.errors:
            self.errors.append("ClientHello incomplete")
        conn = self.conn
        conn.emit(
            CapturedExchange(
                id=conn.next_id(), kind="tls", connection=self.connection,
                client=self.client, server=self.server, start=self.start, end=ts,
                sni=self.hello.sni if self.hello else None,
                alpn=self.hello.alpn if self.hello else (), tls=self.facts(),
                bytes_client_to_server=self.up, bytes_server_to_client=self.down,
                close=reason, errors=tuple(self.errors),
            )
        )  # fmt: skip

    def facts(self) -> TlsFacts:
        code = self.suite_code
        return TlsFacts(
            version=_VERSION_NAMES.get(self.version or 0),
            cipher=self.suite.name if self.suite else (f"0x{code:04X}" if code else None),
            alpn=self.alpn, decrypted=self.decrypted,
            cert_subject=self.cert.subject if self.cert else None,
            cert_issuer=self.cert.issuer if self.cert else None,
        )  # fmt: skip

    # -- records ------------------------------------------------------------------------
    def _record(self, side: _Side, ts: float, record: Record) -> None:
        rtype = record.type
        if side.client and self.version is None and rtype != ContentType.HANDSHAKE:
            self._hold(ts, record)
        elif side.decryptor is not None:
            self._protected(side, ts, record)
        elif rtype == ContentType.HANDSHAKE:
            self._handshake(side, ts, record.fragment)
        elif rtype == ContentType.CHANGE_CIPHER_SPEC:
            # TLS 1.3 (and after a HelloRetryRequest): a middlebox-compatibility no-op (§D.4)
            if self.version is not None and self.version != TLS13:
                self._start12(side, ts)
        elif rtype == ContentType.APPLICATION_DATA:
            self._stop(side, ts, f"{side.name} sent application data before any keys")

    def _hold(self, ts: float, record: Record) -> None:
        """Client records seen before the ServerHello; replayed once it is read."""
        self.pending_size += record.size
        if self.pending_size > PENDING_LIMIT:
            self.pending.clear()
            self._stop(self.c, ts, "client sent too many records before the ServerHello")
            return
        self.pending.append(record)

    def _replay(self, ts: float) -> None:
        pending, self.pending, self.pending_size = self.pending, [], 0
        for record in pending:
            if not self.c.readable:
                return
            self._record(self.c, ts, record)

    def _protected(self, side: _Side, ts: float, record: Record) -> None:
        assert side.decryptor is not None
        if self.version == TLS13 and record.type != ContentType.APPLICATION_DATA:
            return  # §5: CCS (compatibility) or a plaintext alert between protected records
        try:
            ctype, plain = side.decryptor.open(record.type, record.version, record.fragment)
        except DecryptError as e:
            if (
                side.client
                and side.phase is Phase.HANDSHAKE
                and self.hello
                and self.hello.early_data
            ):
                if not self.early_skipped:
                    self.early_skipped = True
                    self.errors.append("0-RTT early data not decrypted (skipped)")
                return  # RFC 8446 §4.2.10: skipped as a server rejecting early data would
            self._stop(side, ts, f"{side.name} record could not be decrypted: {e}")
            return
        if ctype == ContentType.HANDSHAKE:
            self._handshake(side, ts, plain)
        elif ctype == ContentType.APPLICATION_DATA:
            self.app.data(side.client, ts, plain, self.alpn)

    def _handshake(self, side: _Side, ts: float, data: bytes) -> None:
        for mtype, body in side.handshake.feed(data):
            if not side.readable:
                return
            try:
                self._message(side, ts, mtype, body)
            except HandshakeError as e:
                self._bad_message(side, ts, mtype, str(e))

    def _bad_message(self, side: _Side, ts: float, mtype: int, why: str) -> None:
        if side.client and self.hello is None:
            self._stop(side, ts, f"unreadable ClientHello: {why}")
        elif mtype == HandshakeType.SERVER_HELLO and self.version is None:
            self._stop(side, ts, f"unreadable ServerHello: {why}")
            self._stop(self.c, ts, "")
        else:
            self.errors.append(f"{side.name} handshake message {mtype}: {why}")

    def _message(self, side: _Side, ts: float, mtype: int, body: bytes | None) -> None:
        if side.client and self.hello is None:
            if mtype != HandshakeType.CLIENT_HELLO or body is None:
                raise HandshakeError(f"first client handshake message is type {mtype}")
            self.hello = parse_client_hello_body(body)
            self.app.sni, self.app.offered_alpn = self.hello.sni, self.hello.alpn
        elif body is None:
            return  # too large to hold (a long certificate chain): nothing needed from it
        elif mtype == HandshakeType.SERVER_HELLO and not side.client and self.version is None:
            self._server_hello(ts, body)
        elif mtype == HandshakeType.ENCRYPTED_EXTENSIONS and not side.client:
            self.alpn = parse_encrypted_extensions(body)
        elif mtype == HandshakeType.CERTIFICATE and not side.client and self.cert is None:
            self.cert = parse_certificate(body, self.version == TLS13)
        elif mtype == HandshakeType.FINISHED and side.phase is Phase.HANDSHAKE:
            self._install13(side, Phase.APPLICATION, self._secret13(side, application=True))
        elif mtype == HandshakeType.KEY_UPDATE and side.phase is Phase.APPLICATION:
            assert self.suite is not None and self.version == TLS13
            self._install13(side, Phase.APPLICATION, next_secret13(self.suite, side.secret))

    # -- keys ---------------------------------------------------------------------------
    def _server_hello(self, ts: float, body: bytes) -> None:
        hello = parse_server_hello(body)
        if hello.retry:
            return  # HelloRetryRequest: a second ClientHello and the real ServerHello follow
        self.version, self.suite_code = hello.version, hello.cipher_suite
        self.suite = SUITES.get(hello.cipher_suite)
        self.server_random, self.alpn = hello.random, hello.alpn
        if self.version == TLS13:
            self._start13(ts)
        self._replay(ts)

    def _start13(self, ts: float) -> None:
        """RFC 8446 §7.3: everything after the ServerHello uses handshake traffic keys."""
        if self.suite is None or not self.suite.tls13:
            self._no_keys(ts, f"cipher suite {self.facts().cipher} is not supported")
            return
        for side in (self.c, self.s):
            secret = self._secret13(side, application=False)
            if secret is None:
                return
            self._install13(side, Phase.HANDSHAKE, secret)

    def _secret13(self, side: _Side, application: bool) -> bytes | None:
        labels = (
            (Label.CLIENT_TRAFFIC_SECRET_0, Label.SERVER_TRAFFIC_SECRET_0)
            if application
            else (Label.CLIENT_HANDSHAKE_TRAFFIC_SECRET, Label.SERVER_HANDSHAKE_TRAFFIC_SECRET)
        )
        secret = self._lookup(labels[0] if side.client else labels[1])
        if secret is None:
            self._no_keys(None, f"no {labels[0 if side.client else 1].value} in the key log")
        return secret

    def _install13(self, side: _Side, phase: Phase, secret: bytes | None) -> None:
        if secret is None or side.phase is Phase.OPAQUE:
            return
        assert self.suite is not None
        side.secret, side.phase = secret, phase
        try:
            side.decryptor = Decryptor(self.suite, traffic_keys13(self.suite, secret))
        except ValueError as e:  # a secret of the wrong length for the suite
            self._stop(side, None, f"{side.name} keys from the key log are unusable: {e}")
            return
        self.decrypted = True

    def _start12(self, side: _Side, ts: float) -> None:
        """RFC 5246 §7.1: after its ChangeCipherSpec a side's records are protected."""
        suite = self.suite
        if self.version != TLS12 or suite is None or suite.tls13:
            facts = self.facts()
            self._no_keys(ts, f"{facts.cipher} in {facts.version} is not decrypted (not AEAD)")
            return
        master = self._lookup(Label.CLIENT_RANDOM)
        if master is None or self.hello is None:
            self._no_keys(ts, "no CLIENT_RANDOM for this connection in the key log")
            return
        client, server = keys12(suite, master, self.hello.random, self.server_random)
        side.decryptor = Decryptor(suite, client if side.client else server)
        side.phase = Phase.APPLICATION
        self.decrypted = True

    def _lookup(self, label: Label) -> bytes | None:
        if self.keylog is None or self.hello is None:
            return None
        return self.keylog.lookup(self.hello.random, label)

    def _no_keys(self, ts: float | None, why: str | None) -> None:
        """Stop reading both sides: only byte counts from here (says why with a key log)."""
        if self.keylog is not None and why and why not in self.errors:
            self.errors.append(why)
        for side in (self.c, self.s):
            side.phase = Phase.OPAQUE
        self.pending.clear()

    def _stop(self, side: _Side, ts: float | None, why: str) -> None:
        side.phase = Phase.OPAQUE
        if why:
            self.errors.append(why)
            if ts is not None:
                self.app.stop(side.client, ts, why)
