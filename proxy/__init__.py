"""tapproxy: an intercepting HTTP/TCP proxy.

How the pieces fit
==================

Bytes arrive on sockets and leave on sockets; everything in between is pure
code that can be tested by feeding it bytes.

``proxy.http1``
    A sans-IO HTTP/1.1 codec. ``RequestParser``/``ResponseParser`` take bytes
    and hand out events (``RequestHead``, ``ResponseHead``, ``BodyData``,
    ``EndOfMessage``). They are deliberately strict (RFC 9112 §6.3 and the
    hazard table in the team notes): anything that two parsers could read two
    ways is an error, never a guess. ``proxy.http1.writer`` frames what we
    forward from our own parse, so the upstream never sees the client's
    framing bytes.

``proxy.session``
    The per-connection proxy logic, also sans-IO. A session receives events
    from the IO shell (client data, server connected, server data, closes) and
    answers with commands (send to client, open a server connection, send to
    server, close, pause reading). It decides routing, strips hop-by-hop
    headers, answers errors (400/502/504), turns CONNECT and WebSocket
    upgrades into tunnels and builds one ``FlowRecord`` per exchange.

``proxy.server``
    The thin asyncio shell: one listener per ``--mode``, asyncio Protocols
    with explicit backpressure (pause/resume reading at write-buffer water
    marks), the upstream connection pool, timeouts and graceful shutdown.

``proxy.sinks``
    Where finished flows go: the console line and the JSON Lines flow log,
    written off the data path through a bounded queue.

``proxy.tls``, ``proxy.rules``, ``proxy.pcap``
    Certificate authority and leaf issuance, the YAML rule engine, and packet
    capture reading/writing. Each is pure code called by the session or CLI.

``proxy.cli``
    Argument parsing and the subcommands (``tapproxy ca ...`` and friends).
"""

__version__ = "0.1.0"
