"""Playbook tests for sans-IO layers: events in, these commands out.

A playbook is a script of events fed to a layer and the commands it must
answer with, in order::

    assert (
        Playbook(session)
        >> DataReceived(CLIENT, b"GET http://a.test/ HTTP/1.1\\r\\nHost: a.test\\r\\n\\r\\n")
        << OpenServer(server_conn(1), "a.test", 80)
        >> ServerOpened(server_conn(1), ("10.0.0.1", 80), reused=False)
        << SendData(server_conn(1), b"GET / HTTP/1.1\\r\\nHost: a.test\\r\\n\\r\\n")
    )

Each expected item is a command (compared with ``==``), or a ``Match``
(a command type plus field values or predicates) for commands whose exact
value does not matter to the test, such as the flow in a ``Hook``. A
``Capture`` in a ``Match`` keeps the value it met, for later steps. Running
the playbook (``bool(playbook)``) fails with the whole transcript when the
layer answers anything else, or more, or less: a command the script did not
expect is an error, so a playbook states everything a layer did.

Modelled on mitmproxy's ``test/mitmproxy/proxy/tutils.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields, is_dataclass
from typing import Any, Protocol


class Layer(Protocol):
    def handle(self, event: Any) -> list[Any]: ...


class Capture:
    """Matches any value and keeps it (``capture.value``)."""

    def __init__(self) -> None:
        self.value: Any = None
        self.seen = False

    def __call__(self, value: Any) -> bool:
        self.value, self.seen = value, True
        return True

    def __repr__(self) -> str:
        return f"<capture {self.value!r}>" if self.seen else "<capture>"


@dataclass(frozen=True)
class Match:
    """A command of type ``command_type`` whose named fields equal (or satisfy) the values."""

    command_type: type
    checks: dict[str, Any]

    def __init__(self, command_type: type, /, **checks: Any) -> None:
        object.__setattr__(self, "command_type", command_type)
        object.__setattr__(self, "checks", checks)

    def matches(self, command: Any) -> bool:
        if type(command) is not self.command_type:
            return False
        for name, want in self.checks.items():
            got = getattr(command, name)
            ok = want(got) if callable(want) and not isinstance(want, type) else got == want
            if not ok:
                return False
        return True

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.checks.items())
        return f"Match({self.command_type.__name__}, {args})"


def startswith(prefix: bytes) -> Callable[[bytes], bool]:
    return lambda data: data.startswith(prefix)


def _describe(item: Any) -> str:
    if is_dataclass(item) and not isinstance(item, type):
        parts = []
        for f in fields(item):
            value = getattr(item, f.name)
            text = repr(value)
            parts.append(f"{f.name}={text if len(text) < 120 else text[:117] + '...'}")
        return f"{type(item).__name__}({', '.join(parts)})"
    return repr(item)


class Playbook:
    """A script for one layer; run it with ``assert playbook``."""

    def __init__(self, layer: Layer) -> None:
        self.layer = layer
        self.script: list[tuple[str, Any]] = []
        self.done = 0  # steps of the script already run (a playbook may be extended)
        self.pending: list[Any] = []  # commands answered but not yet matched
        self.transcript: list[str] = []

    def __rshift__(self, event: Any) -> Playbook:
        self.script.append(("in", event))
        return self

    def __lshift__(self, expected: Any) -> Playbook:
        self.script.append(("out", expected))
        return self

    def __bool__(self) -> bool:
        for direction, item in self.script[self.done :]:
            self.done += 1
            if direction == "in":
                self._unexpected_leftovers()
                self.transcript.append(f">> {_describe(item)}")
                self.pending = list(self.layer.handle(item))
                continue
            if not self.pending:
                self._fail(f"expected {_describe(item)}, but the layer answered nothing more")
            got = self.pending.pop(0)
            self.transcript.append(f"<< {_describe(got)}")
            if not (item.matches(got) if isinstance(item, Match) else got == item):
                self._fail(f"expected {_describe(item)}")
        self._unexpected_leftovers()
        return True

    def _unexpected_leftovers(self) -> None:
        if self.pending:
            extra = self.pending
            self.pending = []
            for cmd in extra:
                self.transcript.append(f"<< {_describe(cmd)}   (unexpected)")
            self._fail("the layer answered commands the playbook did not expect")

    def _fail(self, why: str) -> None:
        raise AssertionError(why + "\n" + "\n".join(self.transcript))
