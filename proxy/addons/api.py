"""What an addon sees: a flow with a request, maybe a response, and verbs.

Addons import from here (``from proxy.addons.api import Response``). The
objects are plain and mutable; after a hook returns, the host turns what
changed into the hook's verdict (``proxy.addons.host``): an edited request
or response head, an answer (``flow.response = Response.make(...)`` in
``request``, or a new response in ``response``), or a kill. Header fields are
text (latin-1, so any octet survives) and keep their order and case.

``content`` is the body when it is known whole at that point: at
``request`` and ``response`` it is not (the body streams after the head,
``None``); at ``done``, ``error`` and ``save`` it is the recorded body
(whole with ``--save``, else the preview when it holds the whole body).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from proxy.replay.format import Fields

__all__ = ["Flow", "Headers", "Request", "Response"]


class Headers:
    """Ordered header fields; names compare case-insensitively."""

    def __init__(self, fields: Iterable[tuple[str, str]] = ()) -> None:
        self.fields = [(str(k), str(v)) for k, v in fields]

    @classmethod
    def of(cls, fields: Fields) -> Headers:
        return cls((k.decode("latin-1"), v.decode("latin-1")) for k, v in fields)

    def raw(self) -> Fields:
        return tuple((k.encode("latin-1"), v.encode("latin-1")) for k, v in self.fields)

    def get(self, name: str, default: str | None = None) -> str | None:
        low = name.lower()
        return next((v for k, v in self.fields if k.lower() == low), default)

    def get_all(self, name: str) -> list[str]:
        low = name.lower()
        return [v for k, v in self.fields if k.lower() == low]

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def __setitem__(self, name: str, value: str) -> None:
        """Replace every field of this name by one (where the first one was)."""
        low = name.lower()
        at = next((i for i, (k, _) in enumerate(self.fields) if k.lower() == low), None)
        del self[name]
        self.fields.insert(len(self.fields) if at is None else at, (name, str(value)))

    def __delitem__(self, name: str) -> None:
        low = name.lower()
        self.fields = [(k, v) for k, v in self.fields if k.lower() != low]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __iter__(self) -> Iterator[str]:
        return iter([k for k, _ in self.fields])

    def __len__(self) -> int:
        return len(self.fields)

    def add(self, name: str, value: str) -> None:
        self.fields.append((name, str(value)))

    def items(self) -> list[tuple[str, str]]:
        return list(self.fields)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Headers) and other.fields == self.fields

    def __repr__(self) -> str:
        return f"Headers({self.fields!r})"


class Request:
    def __init__(
        self, method: str, url: str, headers: Headers, content: bytes | None = None
    ) -> None:
        self.method = method
        self.url = url
        self.headers = headers
        self.content = content

    @property
    def text(self) -> str | None:
        return None if self.content is None else self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        return None if self.content is None else json.loads(self.content)


class Response:
    def __init__(
        self, status_code: int, reason: str, headers: Headers, content: bytes | None = None
    ) -> None:
        self.status_code = status_code
        self.reason = reason
        self.headers = headers
        self.content = content

    @classmethod
    def make(
        cls,
        status_code: int = 200,
        content: bytes | str | Mapping[str, Any] | list[Any] = b"",
        headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
    ) -> Response:
        """A response of the addon's own: a str is sent as UTF-8 text, a dict or
        list as JSON (with the Content-Type to say so unless ``headers`` has one)."""
        pairs = list(headers.items() if isinstance(headers, Mapping) else headers or ())
        h = Headers(pairs)
        if isinstance(content, bytes):
            body = content
        elif isinstance(content, str):
            body = content.encode("utf-8")
            if "content-type" not in h:
                h.add("Content-Type", "text/plain; charset=utf-8")
        else:
            body = json.dumps(content).encode("utf-8")
            if "content-type" not in h:
                h.add("Content-Type", "application/json")
        return cls(status_code, "", h, body)

    @property
    def text(self) -> str | None:
        return None if self.content is None else self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        return None if self.content is None else json.loads(self.content)


class Flow:
    """One exchange as an addon sees it; ``options``: the proxy's options, read-only."""

    def __init__(
        self,
        id: str,
        request: Request,
        options: Mapping[str, Any],
        response: Response | None = None,
        error: str | None = None,
        record: Any = None,
    ) -> None:
        self.id = id
        self.request = request
        self.response = response
        self.error = error
        self.options = options
        self.record = record  # at done/error: the proxy.flow.record.FlowRecord
        self.killed = False
        self.metadata: dict[str, Any] = {}  # shared by the hooks of this flow

    def kill(self) -> None:
        """End the flow: the client connection is reset (at request and response)."""
        self.killed = True
