"""tapproxy: an intercepting HTTP/TCP proxy.

How the pieces fit
==================

Bytes arrive on sockets and leave on sockets; everything in between is pure
code, driven by events and answering with commands, and tested by feeding it
events (``tests/playbook.py``: "this event in, these commands out").

The vocabulary (``proxy.layers.events``, ``proxy.layers.commands``)
    Every event names the connection it came from and every command the
    connection it acts on: the client (``CLIENT``), or a server connection
    named by the layer that opened it (``OpenServer.conn``). Opening a server
    connection states the SNI and ALPN to offer and, later, a proxy to go
    through. Events: data, end of stream, a connection gone, a server opened
    or failed, a timer, a timeout, the client's TLS established or failed, a
    held hook resumed. Commands: send (now, or at a time a rule set), half-close,
    close, open, release to the pool, pause and resume reading, set a timer,
    terminate the client's TLS, and ``Hook``.

The layers of one client connection (``proxy.layers.root``)
    ``ClientLayers`` hands each event to the layer in charge and builds the
    next one when a layer hands the connection on:

    * the HTTP/1 session (``proxy.session.http.HttpSession``), the first layer
      of a forward or reverse listener: the logic of one exchange at a time
      (rules, hooks, the record). It is composed of small parts: a client
      codec (``proxy.session.codec.ClientCodec``; ``ClientSide`` for HTTP/1:
      requests in, responses out at the pace rules allow), ``ServerSide``
      (the server connection and the server-facing codec: requests framed
      from our own parse, responses parsed; or a stream of a shared HTTP/2
      connection, ``proxy.session.shared``), ``RulePhase`` (rule decisions, returned as outcomes),
      ``RequestPath`` and ``ResponsePath`` (a request from head to server, a
      response from head to end), ``Endings`` (how an exchange ends) and
      ``HookPoints`` (lifecycle hooks). The HTTP/2 preface, ALPN ``h2`` or
      an accepted ``Upgrade: h2c`` hands the connection to
    * the HTTP/2 layer (``proxy.layers.http2``): h2's connection object
      frames the client's streams, and every request stream gets an
      ``HttpSession`` of its own whose client codec is that stream
      (``StreamCodec``), so rules, hooks and records are the same code for
      both protocols; ``UpstreamMux`` shares HTTP/2 server connections among
      the streams. Events name the stream they are for: the layer renames
      its sessions' timers, hooks and server connections (``names``). Data
      is acknowledged only as the other side takes it. A CONNECT or a
      ``101`` hands an HTTP/1 connection to
    * the tunnel layer (``proxy.layers.tunnel``): bytes both ways, half-close
      aware, with the TCP rules (toxics) as timed commands; the ``tcp:`` mode
      is a tunnel from the start (``TcpLayers``). A CONNECT to a host we
      intercept hands it instead to
    * the next-layer choice (``proxy.layers.nextlayer``): the client's first
      bytes say TLS (terminated, honouring ``--mitm-hosts``/``--ignore-hosts``
      and pinned hosts), HTTP, or raw bytes; the root then builds a nested
      HTTP session over that TLS (its records say so), or a raw tunnel. A
      reverse listener with ``--mitm`` starts here.

    SOCKS5 and transparent connections enter at the next-layer choice
    (``proxy.layers.entry``). A ``101`` for ``Upgrade: websocket`` hands the
    connection to the WebSocket layer (``proxy.layers.websocket``) instead
    of the tunnel: frames parsed both ways (wsproto's decoder), messages
    recorded one by one (``Hook(MESSAGE)``, as gRPC's) and given to the
    ``websocket:`` rules, the original frames forwarded when no rule changed
    a message. Server replay answers an upgrade with the recorded ``101``
    and puts the recorded server (``proxy.layers.websocket.replayed``) in
    the server connection's place. On HTTP/2 (RFC 8441), an extended
    CONNECT stream's session (``proxy.layers.http2.wsstream``) sends the
    server the HTTP/1.1 handshake it stands for (or an extended CONNECT on
    a shared HTTP/2 connection whose server takes them) and, once the
    server switched, runs the same WebSocket layer with the stream as its
    client.

The flow (``proxy.flow``)
    ``FlowRecord`` is what was seen of one flow: the request as the client
    sent it and as it was forwarded, the response as the server sent it and
    as the client got it, TLS facts, timings, the error; ``jsonview`` turns it
    into the flow log's JSON, and HAR entries are built on that. Lifecycle
    hooks (``proxy.flow.hooks``) let subscribers watch a flow as it happens
    (started, request, response head, response, error, tunnel, done) and, at
    the two holdable points, hold it and resume it later with edits, a reply
    or a kill: the one mechanism for breakpoints, addons and server replay.
    A ``HoldSwitch`` arms points while the proxy runs (the web UI's
    breakpoints, including each WebSocket message, and its live list's
    notices), so a UI with nothing set costs no hook per exchange.

The web UI (``proxy.web``) and the filter language (``proxy.flowfilter``)
    ``tapproxy --web`` serves the UI and the admin API (docs/api.md) with
    aiohttp from the proxy's own loop. It is a subscriber and a sink like
    any other: ``feed`` pushes live summaries to browsers, ``intercept``
    holds flows at breakpoints, and ``storesink`` fills a bounded SQLite
    store (``store``) from the dispatcher's records, through a spool that
    is indexed only while someone looks (``storewait``). ``proxy.flowfilter``
    parses mitmproxy-style expressions (``~u``, ``~bq``, ``&``, ``!``...)
    once for the list, the breakpoints, the exports and ``--view-filter``.

The IO shell (``proxy.server``)
    ``ClientConnection`` carries the layers' commands out on one client
    connection and its server connections (``ServerEnds``), with explicit
    backpressure (reading pauses while the other side's buffer is full),
    terminates the client's TLS over memory BIOs when asked
    (``ClientTlsStarter``), and delivers hooks to their subscribers
    (``HookBus``). ``ProxyServer`` binds the listeners, shares the upstream
    pool, runs the watchdog and shuts down gracefully. The shell decides
    nothing about protocols: it writes no HTTP answer of its own.

The codec and the rest
    ``proxy.http1`` is the strict HTTP/1.1 codec (RFC 9112 §6.3 and the
    team's hazard table: anything two parsers could read two ways is an
    error). ``proxy.rules`` is the YAML rule engine, ``proxy.tls`` the
    certificate authority, leaf issuance and TLS endpoints, ``proxy.pcap``
    capture reading, live capture with a kernel BPF filter, TLS decryption
    with a key log, and PCAP export. ``proxy.sinks`` are the outputs that
    subscribe to finished flows (console, JSON Lines, HAR, body files,
    PCAP, recordings, the web store), written off the data path; ``proxy.cli`` is the command line.

Where we differ from mitmproxy's ``mitmproxy/proxy``
    Layers return a list of commands per event instead of being generators
    that yield a command and wait for its reply: a command that needs an
    answer (open a server connection, a held hook) is answered by a later
    event naming the same connection or flow, so a layer's state is always
    explicit and a playbook can stop anywhere. TLS stays in the shell, over
    memory BIOs: the layers ask for it and hear how it went. And lifecycle
    hooks are commands too, so holding a flow is the same mechanism whether
    a rule, a breakpoint or an addon holds it. For HTTP/2, mitmproxy runs one
    HTTP layer over per-stream ``HttpStream`` objects and buffers flow
    control away (every DATA acknowledged at once); we run one ordinary
    session per stream behind a codec protocol, and acknowledge data only
    as it is consumed, so a slow peer is slowed, not buffered for.
"""

__version__ = "0.1.0"
