"""Sans-IO HTTP/1.1 codec: strict parsers and canonical serialisation."""

from proxy.http1.errors import ProtocolError
from proxy.http1.events import (
    CHUNKED,
    NO_BODY,
    TUNNEL,
    UNTIL_CLOSE,
    BodyData,
    EndOfMessage,
    Event,
    Fields,
    Framing,
    FramingKind,
    RequestHead,
    ResponseHead,
)
from proxy.http1.parser import DEFAULT_LIMITS, Limits, RequestParser, ResponseParser

__all__ = [
    "CHUNKED",
    "DEFAULT_LIMITS",
    "NO_BODY",
    "TUNNEL",
    "UNTIL_CLOSE",
    "BodyData",
    "EndOfMessage",
    "Event",
    "Fields",
    "Framing",
    "FramingKind",
    "Limits",
    "ProtocolError",
    "RequestHead",
    "RequestParser",
    "ResponseHead",
    "ResponseParser",
]
