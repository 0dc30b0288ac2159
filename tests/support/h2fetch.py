"""A small prior-knowledge h2c client (RFC 9113 §3.3) on the ``h2`` package.

``fetch_h2(port, authority, paths)`` sends every GET on one connection, at
most ``concurrency`` streams at a time, and returns each response's status,
header fields (without pseudo-headers) and body, in the order asked. Data is
acknowledged as it is read, so bodies of any size pass; every wait is
bounded by the socket timeout.
"""

from __future__ import annotations

import socket

import h2.config
import h2.connection
import h2.events

H2Got = tuple[int, list[tuple[str, str]], bytes]


def fetch_h2(
    port: int, authority: str, paths: list[str], concurrency: int = 50, timeout: float = 30.0
) -> list[H2Got]:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    conn.increment_flow_control_window(1 << 30)
    sock.sendall(conn.data_to_send())
    results: dict[int, H2Got] = {}
    heads: dict[int, tuple[int, list[tuple[str, str]]]] = {}
    bodies: dict[int, bytearray] = {}
    stream_of: dict[int, int] = {}  # stream id -> index in paths
    next_path = 0
    open_streams = 0
    try:
        while len(results) < len(paths):
            while next_path < len(paths) and open_streams < concurrency:
                sid = conn.get_next_available_stream_id()
                conn.send_headers(sid, [(":method", "GET"), (":scheme", "http"),
                                        (":authority", authority),
                                        (":path", paths[next_path])], end_stream=True)  # fmt: skip
                stream_of[sid] = next_path
                bodies[sid] = bytearray()
                next_path += 1
                open_streams += 1
            sock.sendall(conn.data_to_send())
            data = sock.recv(1 << 20)
            if not data:
                raise ConnectionError("the proxy closed the h2c connection")
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    fields = [(k.decode(), v.decode()) for k, v in event.headers]
                    status = int(dict(fields)[":status"])
                    heads[event.stream_id] = (status, [f for f in fields if f[0][0] != ":"])
                elif isinstance(event, h2.events.DataReceived):
                    bodies[event.stream_id] += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, h2.events.StreamEnded):
                    sid = event.stream_id
                    status, fields = heads[sid]
                    results[stream_of[sid]] = (status, fields, bytes(bodies.pop(sid)))
                    open_streams -= 1
                elif isinstance(event, h2.events.StreamReset):
                    raise ConnectionError(f"stream {event.stream_id} reset: {event.error_code}")
            sock.sendall(conn.data_to_send())
        conn.close_connection()
        sock.sendall(conn.data_to_send())
    finally:
        sock.close()
    return [results[i] for i in range(len(paths))]
