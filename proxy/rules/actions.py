"""Edit actions: what a rule changes in a request or response.

Head actions change a mutable ``Head`` working copy (method, URL, fields,
status); body actions turn decoded body bytes into new bytes. Every action
is a frozen value built at load time, so applying one is a few string
operations; ``summary`` is what the flow log and ``explain`` show.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote_plus, urlsplit

from proxy.rules.facts import DEFAULT_PORTS, make_url
from proxy.rules.jsonpatch import PatchError, PatchOp, apply_patch, merge_patch
from proxy.words import plural


class EditError(Exception):
    """An action could not apply (e.g. the body is not JSON); reported as a warning."""


# What applying an action may raise on hostile input; each becomes a warning.
EDIT_FAILURES = (EditError, RecursionError, re.error, IndexError, ValueError)


@dataclass(slots=True)
class Head:
    """The request or response head while edits apply to it."""

    method: str = ""
    scheme: str = ""
    host: str = ""
    port: int = 0
    path: str = ""
    query: str = ""
    status: int = 0
    fields: list[tuple[bytes, bytes]] = field(default_factory=list)
    host_pinned: bool = False  # a rule set Host itself: do not follow URL changes

    @property
    def url(self) -> str:
        return make_url(self.scheme, self.host, self.port, self.path, self.query)


class Action:
    """Base of all actions; ``body`` tells whether it needs the body."""

    __slots__ = ()
    body = False

    def summary(self) -> str:
        raise NotImplementedError

    def apply(self, head: Head) -> None:
        raise NotImplementedError

    def apply_body(self, data: bytes) -> bytes:
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class SetHeader(Action):
    """Replace every field of this name by one (kept where the first one was)."""

    name: bytes
    value: bytes

    def summary(self) -> str:
        return f"set_header {self.name.decode()}"

    def apply(self, head: Head) -> None:
        lname = self.name.lower()
        out: list[tuple[bytes, bytes]] = []
        done = False
        for k, v in head.fields:
            if k.lower() != lname:
                out.append((k, v))
            elif not done:
                out.append((self.name, self.value))
                done = True
        if not done:
            out.append((self.name, self.value))
        head.fields = out
        if lname == b"host":
            head.host_pinned = True


@dataclass(frozen=True, slots=True)
class AddHeader(Action):
    """Append a field, keeping any that exist."""

    name: bytes
    value: bytes

    def summary(self) -> str:
        return f"add_header {self.name.decode()}"

    def apply(self, head: Head) -> None:
        head.fields.append((self.name, self.value))


@dataclass(frozen=True, slots=True)
class RemoveHeader(Action):
    lname: bytes

    def summary(self) -> str:
        return f"remove_header {self.lname.decode()}"

    def apply(self, head: Head) -> None:
        head.fields = [(k, v) for k, v in head.fields if k.lower() != self.lname]


@dataclass(frozen=True, slots=True)
class RewriteUrl(Action):
    """``re.sub`` on the whole URL; the result must still be an absolute http(s) URL."""

    regex: re.Pattern[str]
    template: str

    def summary(self) -> str:
        return f"rewrite_url {self.regex.pattern!r}"

    def apply(self, head: Head) -> None:
        new = self.regex.sub(self.template, head.url)
        parts = urlsplit(new)
        try:
            port = parts.port or DEFAULT_PORTS.get(parts.scheme, 0)
        except ValueError:
            port = 0
        if parts.scheme not in ("http", "https") or not parts.hostname or not port:
            raise EditError(f"rewrite_url produced an unusable URL {new!r}")
        head.scheme, head.host, head.port = parts.scheme, parts.hostname, port
        head.path, head.query = parts.path or "/", parts.query


@dataclass(frozen=True, slots=True)
class RewritePath(Action):
    regex: re.Pattern[str]
    template: str

    def summary(self) -> str:
        return f"rewrite_path {self.regex.pattern!r}"

    def apply(self, head: Head) -> None:
        new = self.regex.sub(self.template, head.path)
        if not new.startswith("/") or any(c in new for c in " \r\n\t?#"):
            raise EditError(f"rewrite_path produced an unusable path {new!r}")
        head.path = new


@dataclass(frozen=True, slots=True)
class SetQuery(Action):
    """Set (or with ``None`` remove) one query parameter; others stay byte-identical."""

    name: str
    value: str | None

    def summary(self) -> str:
        return f"set_query {self.name}"

    def apply(self, head: Head) -> None:
        out: list[str] = []
        done = self.value is None
        for part in head.query.split("&") if head.query else []:
            if unquote_plus(part.split("=", 1)[0]) != self.name:
                out.append(part)
            elif not done:
                out.append(self._encoded())
                done = True
        if not done:
            out.append(self._encoded())
        head.query = "&".join(out)

    def _encoded(self) -> str:
        return f"{quote(self.name, safe='')}={quote(self.value or '', safe='')}"


@dataclass(frozen=True, slots=True)
class SetMethod(Action):
    method: str

    def summary(self) -> str:
        return f"set_method {self.method}"

    def apply(self, head: Head) -> None:
        head.method = self.method


@dataclass(frozen=True, slots=True)
class SetStatus(Action):
    status: int

    def summary(self) -> str:
        return f"set_status {self.status}"

    def apply(self, head: Head) -> None:
        head.status = self.status


@dataclass(frozen=True, slots=True)
class MapRemote(Action):
    """Send the request to another origin, keeping path and query (path prefixed)."""

    scheme: str
    host: str
    port: int
    prefix: str = ""  # prepended to the path, no trailing "/"
    keep_host: bool = False

    def summary(self) -> str:
        return f"map_remote {make_url(self.scheme, self.host, self.port, self.prefix, '')}"

    def apply(self, head: Head) -> None:
        head.scheme, head.host, head.port = self.scheme, self.host, self.port
        head.path = self.prefix + head.path
        if self.keep_host:
            head.host_pinned = True


@dataclass(frozen=True, slots=True)
class ReplaceBody(Action):
    """``re.sub`` on the decoded body bytes (a literal is an escaped regex)."""

    regex: re.Pattern[bytes]
    template: bytes
    count: int = 0
    body = True

    def summary(self) -> str:
        # Text, not a bytes repr; a literal shows as its escaped regex.
        pattern = self.regex.pattern.decode("utf-8", "backslashreplace")
        return f"replace_body regex {pattern!r}"

    def apply_body(self, data: bytes) -> bytes:
        return self.regex.sub(self.template, data, count=self.count)


@dataclass(frozen=True, slots=True)
class JsonMerge(Action):
    """RFC 7396 JSON Merge Patch of the body."""

    patch: Any
    body = True

    def summary(self) -> str:
        return "json_merge"

    def apply_body(self, data: bytes) -> bytes:
        return dump_json(merge_patch(load_json(data), self.patch))


@dataclass(frozen=True, slots=True)
class JsonPatch(Action):
    """RFC 6902 JSON Patch of the body; a failed ``test`` leaves it unchanged."""

    ops: Sequence[PatchOp]
    body = True

    def summary(self) -> str:
        return f"json_patch ({plural(len(self.ops), 'op')})"

    def apply_body(self, data: bytes) -> bytes:
        try:
            return dump_json(apply_patch(load_json(data), self.ops))
        except PatchError as e:
            raise EditError(f"json_patch not applied: {e}") from None


def load_json(data: bytes) -> Any:
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        raise EditError("body is not JSON") from None


def dump_json(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
