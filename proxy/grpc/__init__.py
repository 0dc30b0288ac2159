"""gRPC on the wire: framing, status, protobuf decoding and call records.

gRPC (https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-HTTP2.md) rides
HTTP/2 requests whose bodies are length-prefixed messages (``framing``),
possibly compressed (``compression``), ending in trailers that carry the
call's status (``status``). The session feeds an ``observer`` per gRPC
exchange with the body bytes as they pass; each completed message becomes a
record of its own (``records``) as soon as it completes, so a streaming
call is seen while it is open. Messages are decoded off the data path, when
their record is built: with the user's schema (``schema``, ``protoload``:
the ``protobuf`` package's descriptor pool and json_format), else
schemalessly (``schemaless`` on ``wire``). gRPC-Web (``application/grpc-web``,
``-text``) is framed the same way, with its trailers as a last frame.
"""
