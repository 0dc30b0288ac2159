"""The SOCKS5 listener's handshake (RFC 1928, RFC 1929), sans-IO.

A client greets with the methods it can authenticate with (RFC 1928 §3); we
choose "no authentication" or, with ``--proxy-auth``, "username/password"
(RFC 1929), and refuse with 0xFF when it offers neither. Its request
(§4) names a command and a destination: an IPv4 or IPv6 address, or a
domain name we resolve ourselves (remote DNS, §5). CONNECT is accepted; BIND
and UDP ASSOCIATE are answered with reply 0x07 "command not supported" and
an unknown address type with 0x08 (§6), then closed. Wrong credentials get
RFC 1929 status 0x01 and the connection is closed, as §2 requires.

SOCKS4 and SOCKS4a (a version byte of 4) are accepted too when no
credentials are required: CONNECT with an IPv4 address, or with a name
after the user id (4a); they have no way to carry a password.

On success the reply goes out at once (bound address 0.0.0.0:0, as for an
intercepted CONNECT the client is told the tunnel is up before the server
is reached) and ``target`` says where the client wants to go; any bytes it
already sent after its request are in ``early``. The root then hands the
connection to the same next-layer choice as an intercepted CONNECT.
"""

from __future__ import annotations

import base64
import hmac
import ipaddress
from dataclasses import dataclass
from enum import Enum

from proxy.layers import socks5wire as wire
from proxy.layers.commands import CLIENT, CloseConnection, Command, SendData
from proxy.layers.events import ConnectionClosed, DataReceived, EofReceived, Event

MAX_HANDSHAKE = 1024  # more than any greeting, RFC 1929 request or request can be


class Stage(Enum):
    GREETING = "greeting"
    AUTH = "auth"
    REQUEST = "request"
    DONE = "done"


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why the handshake ended without a tunnel (for the record)."""

    message: str
    target: tuple[str, int] | None = None


class Socks5Layer:
    """Reads the handshake; ``target`` (success) or ``refusal`` (failure) is the outcome."""

    __slots__ = ("buffer", "early", "own", "refusal", "stage", "target", "token", "version")

    def __init__(
        self, proxy_auth: bytes | None, own: frozenset[tuple[str, int]] = frozenset()
    ) -> None:
        self.token = proxy_auth  # base64 of "user:pass" (--proxy-auth), None: no credentials
        self.own = own  # the proxy's own listeners: a request for one would loop
        self.buffer = b""
        self.stage = Stage.GREETING
        self.version = wire.VERSION
        self.target: tuple[str, int] | None = None
        self.early = b""  # bytes the client sent after its request
        self.refusal: Refusal | None = None

    @property
    def done(self) -> bool:
        return self.target is not None or self.refusal is not None

    def handle(self, event: Event) -> list[Command]:
        if self.done:
            return []
        if isinstance(event, DataReceived) and event.conn.is_client:
            self.buffer += event.data
            out: list[Command] = []
            while not self.done and self._step(out):
                pass
            if not self.done and len(self.buffer) > MAX_HANDSHAKE:
                return out + self._refuse(f"client: SOCKS handshake over {MAX_HANDSHAKE} bytes")
            return out
        if isinstance(event, EofReceived | ConnectionClosed) and event.conn.is_client:
            self.refusal = Refusal(
                f"client: closed the connection during the SOCKS {self.stage.value}"
            )
            return [CloseConnection(CLIENT)]
        return []

    def _step(self, out: list[Command]) -> bool:
        """Consume one message if complete; False: wait for more bytes."""
        if self.stage is Stage.GREETING:
            return self._greeting(out)
        if self.stage is Stage.AUTH:
            return self._auth(out)
        return self._request(out)

    def _refuse(
        self, message: str, answer: bytes = b"", target: tuple[str, int] | None = None
    ) -> list[Command]:
        self.refusal = Refusal(message, target)
        out: list[Command] = [SendData(CLIENT, answer)] if answer else []
        return [*out, CloseConnection(CLIENT)]

    # -- RFC 1928 §3: the greeting ---------------------------------------------------
    def _greeting(self, out: list[Command]) -> bool:
        data = self.buffer
        if not data:
            return False
        if data[0] == 4:
            return self._socks4(out)
        if data[0] != wire.VERSION:
            out += self._refuse(f"client: not SOCKS (version byte 0x{data[0]:02x})")
            return False
        if len(data) < 2 or len(data) < 2 + data[1]:
            return False
        methods = set(data[2 : 2 + data[1]])
        self.buffer = data[2 + data[1] :]
        wanted = wire.Method.USER_PASS if self.token is not None else wire.Method.NO_AUTH
        if wanted not in methods:
            answer = bytes((wire.VERSION, wire.Method.NO_ACCEPTABLE))
            what = "username/password" if self.token is not None else "no authentication"
            out += self._refuse(f"client: SOCKS5 client does not offer {what}", answer)
            return False
        out.append(SendData(CLIENT, bytes((wire.VERSION, wanted))))
        self.stage = Stage.AUTH if self.token is not None else Stage.REQUEST
        return True

    # -- RFC 1929 §2: username/password ------------------------------------------------
    def _auth(self, out: list[Command]) -> bool:
        data = self.buffer
        if len(data) < 2:
            return False
        if data[0] != wire.AUTH_VERSION:
            out += self._refuse(f"client: bad RFC 1929 version 0x{data[0]:02x}", b"\x01\x01")
            return False
        ulen = data[1]
        if len(data) < 2 + ulen + 1 or len(data) < 3 + ulen + data[2 + ulen]:
            return False
        user = data[2 : 2 + ulen]
        plen = data[2 + ulen]
        password = data[3 + ulen : 3 + ulen + plen]
        self.buffer = data[3 + ulen + plen :]
        assert self.token is not None
        given = base64.b64encode(user + b":" + password)
        if not hmac.compare_digest(given, self.token):
            name = user.decode("utf-8", "replace")
            message = (
                f"refused: wrong SOCKS5 user name or password for {name!r} (RFC 1929 status 0x01)"
            )
            out += self._refuse(message, bytes((wire.AUTH_VERSION, 0x01)))
            return False
        out.append(SendData(CLIENT, bytes((wire.AUTH_VERSION, 0x00))))
        self.stage = Stage.REQUEST
        return True

    # -- RFC 1928 §4: the request ------------------------------------------------------
    def _request(self, out: list[Command]) -> bool:
        data = self.buffer
        if len(data) < 4:
            return False
        try:
            n = wire.address_length(data[3:])
        except ValueError as e:
            answer = wire.reply(wire.Reply.ADDRESS_TYPE_NOT_SUPPORTED)
            out += self._refuse(f"client: SOCKS5 request with an unknown {e}", answer)
            return False
        if n is None or len(data) < 3 + n:
            return False
        try:
            target = wire.decode_address(data[3 : 3 + n])
        except (UnicodeError, ValueError):
            answer = wire.reply(wire.Reply.GENERAL_FAILURE)
            out += self._refuse("client: SOCKS5 request with an undecodable host name", answer)
            return False
        self.early, self.buffer = data[3 + n :], b""
        command = data[1]
        if command != wire.Cmd.CONNECT:
            names = {int(wire.Cmd.BIND): "BIND", int(wire.Cmd.UDP_ASSOCIATE): "UDP ASSOCIATE"}
            name = names.get(command, f"command 0x{command:02x}")
            answer = wire.reply(wire.Reply.COMMAND_NOT_SUPPORTED)
            message = f"client: SOCKS5 {name} is not supported (reply 0x07)"
            out += self._refuse(message, answer, target)
            return False
        if target in self.own:
            answer = wire.reply(wire.Reply.NOT_ALLOWED)
            message = f"refused: SOCKS5 request for the proxy itself ({target[0]}:{target[1]})"
            out += self._refuse(message, answer, target)
            return False
        out.append(SendData(CLIENT, wire.reply(wire.Reply.SUCCEEDED)))
        self.stage = Stage.DONE
        self.target = target
        return False

    # -- SOCKS4 and 4a ----------------------------------------------------------------
    def _socks4(self, out: list[Command]) -> bool:
        """VN CD DSTPORT DSTIP USERID NUL [HOST NUL] (SOCKS4, and 4a for names)."""
        data = self.buffer
        end = data.find(b"\x00", 8)
        if end < 0:
            return False
        ip = ipaddress.IPv4Address(data[4:8])
        port = int.from_bytes(data[2:4], "big")
        rest = end + 1
        host = str(ip)
        if data[4:7] == b"\x00\x00\x00" and data[7] != 0:  # 4a: the name follows
            name_end = data.find(b"\x00", rest)
            if name_end < 0:
                return False
            host = data[rest:name_end].decode("ascii", "replace").lower()
            rest = name_end + 1
        self.version = 4
        self.early, self.buffer = data[rest:], b""
        refused = b"\x00\x5b" + bytes(6)  # 91: request rejected or failed
        if self.token is not None:
            out += self._refuse("refused: SOCKS4 carries no password (--proxy-auth is on)", refused)
            return False
        if data[1] != 1:
            out += self._refuse(f"client: SOCKS4 command {data[1]} is not supported", refused)
            return False
        out.append(SendData(CLIENT, b"\x00\x5a" + bytes(6)))  # 90: request granted
        self.stage = Stage.DONE
        self.target = (host, port)
        return False
