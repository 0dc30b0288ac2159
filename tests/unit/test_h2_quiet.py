"""h2 and hpack build no log text that nobody reads, and nothing else changes.

``link.quiet_h2_trace`` gives ``h2.connection`` a module-level ``repr`` (the
built-in ``type``) so that ``_receive_frame``'s trace message stops
rendering every frame received; that is safe only while that trace line is
the only ``repr`` call in the module, which the first test checks in h2's
installed source (an h2 upgrade that adds one fails here, not in traffic).
"""

from __future__ import annotations

import inspect
import logging
import re

import h2.connection
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import RequestReceived

from proxy.layers.http2 import link

REQUEST = [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"), (b":authority", b"a")]


def test_the_trace_line_is_the_only_repr_in_h2_connection() -> None:
    source = inspect.getsource(h2.connection)
    calls = [line.strip() for line in source.splitlines() if re.search(r"\brepr\(", line)]
    assert calls == ['self.config.logger.trace("Received frame: %s", repr(frame))']


def test_frames_are_still_received_with_the_quiet_trace() -> None:
    server = link.connection(client_side=False)
    assert vars(h2.connection)["repr"] is type
    for name in ("hpack.hpack", "hpack.table"):
        assert logging.getLogger(name).debug is link._no_debug
    server.initiate_connection()
    client = H2Connection(H2Configuration(client_side=True, header_encoding=None))
    client.initiate_connection()
    client.send_headers(1, REQUEST, end_stream=True)
    events = server.receive_data(client.data_to_send())
    requests = [e for e in events if isinstance(e, RequestReceived)]
    assert [(e.stream_id, e.headers) for e in requests] == [(1, REQUEST)]


OPTIONS = (
    "client_side", "header_encoding", "validate_outbound_headers", "normalize_outbound_headers",
    "split_outbound_cookies", "validate_inbound_headers", "normalize_inbound_headers",
)  # fmt: skip


def test_our_configuration_holds_what_h2s_would_and_logs_nothing() -> None:
    """``link.Config`` keeps h2's options as plain attributes (no descriptor
    call per read) with the values h2's own configuration would hold, and
    ``QuietLogger`` takes any log call and drops it."""
    for client_side in (True, False):
        ours = link.connection(client_side).config
        theirs = H2Configuration(
            client_side=client_side, header_encoding=None, validate_inbound_headers=True,
            normalize_inbound_headers=False, validate_outbound_headers=False,
            normalize_outbound_headers=False,
        )  # fmt: skip
        assert [getattr(ours, o) for o in OPTIONS] == [getattr(theirs, o) for o in OPTIONS]
        assert {o for o in OPTIONS if o != "header_encoding"} <= set(vars(ours))
        assert isinstance(ours.logger, link.QuietLogger)
        assert ours.logger.debug("Stream ID %d created", 1) == ""
        assert ours.logger.trace("Received frame: %s", object(), extra={"a": 1}) == ""
