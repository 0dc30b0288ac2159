"""Our count of open HTTP/2 streams is h2's: the same number, the same streams dropped.

``link.Connection._open_streams`` replaces h2's walk (python-hyper/h2#1184)
for speed only. Here a real h2 client opens streams on our server end and
leaves them in every state a server sees (open, half-closed either way,
closed by an END_STREAM both ways, reset by either side); then h2's own
method, run on a copy, and ours must agree on the count for both parities,
on which streams stay and on what ``_closed_streams`` records.
"""

from __future__ import annotations

import copy

import pytest
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes

from proxy.layers.http2.link import Connection, connection

REQUEST = [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"), (b":authority", b"a")]


def server_with_streams() -> Connection:
    client = H2Connection(H2Configuration(client_side=True, header_encoding=None))
    client.initiate_connection()
    server = connection(client_side=False)
    assert isinstance(server, Connection)
    server.initiate_connection()
    for stream in range(1, 25, 2):
        client.send_headers(stream, REQUEST, end_stream=stream % 3 == 0)
    client.reset_stream(5, ErrorCodes.CANCEL)
    server.receive_data(client.data_to_send())
    server.send_headers(3, [(b":status", b"200")], end_stream=True)  # client ended it: closed
    server.send_headers(7, [(b":status", b"200")], end_stream=True)  # half-closed (local)
    server.reset_stream(11, ErrorCodes.REFUSED_STREAM)
    server.send_headers(9, [(b":status", b"200")], end_stream=True)  # closed
    return server


def originals(conn: Connection) -> H2Connection:
    twin = copy.copy(conn)
    twin.streams = dict(conn.streams)
    twin._closed_streams = copy.copy(conn._closed_streams)
    return twin


@pytest.mark.parametrize("remainder", [0, 1])
def test_same_count_and_cleanup_as_h2(remainder: int) -> None:
    ours = server_with_streams()
    theirs = originals(ours)
    assert len(ours.streams) == 12
    expected = H2Connection._open_streams(theirs, remainder)
    assert ours._open_streams(remainder) == expected
    assert list(ours.streams) == list(theirs.streams)
    assert dict(ours._closed_streams) == dict(theirs._closed_streams)
    assert len(ours._closed_streams) == 4  # 3, 5, 9, 11


def test_open_inbound_streams_counts_the_open_ones() -> None:
    conn = server_with_streams()
    assert conn.open_inbound_streams == 8  # 12 streams, 4 closed
    assert conn.open_outbound_streams == 0
