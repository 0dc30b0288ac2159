"""Whole bodies for HAR entries, from ``--capture-bodies`` (issue 14 item 3).

A flow record's preview holds only the first ``--body-preview`` bytes; a
body longer than that is whole only in the body file ``--capture-bodies``
wrote (up to ``--capture-max-body``, marked when cut). The HAR mapping
(``har_entry``) asks a ``BodySource`` for it:

* the live ``--har`` sink reads the bytes the record itself carries
  (``FlowRecord.bodies``), since the body files are written by another sink
  in the same batch and may not be on disk yet;
* ``tapproxy convert`` reads the file the record names (``body_file``).

Both give the same bytes, so a HAR converted from a flow log is still byte
for byte the HAR written live.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from proxy.flow.record import CapturedBodies, FlowRecord
from proxy.oserrors import reason

__all__ = ["BodySource", "Captured", "FileBodies", "RecordBodies"]

Json = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Captured:
    """A captured body: its bytes (as sent, content codings kept) or why none."""

    data: bytes | None
    truncated: bool = False  # only the first --capture-max-body bytes
    problem: str | None = None  # why ``data`` is None (an unreadable file)


class BodySource(Protocol):
    """Where ``har_entry`` finds a body its record's preview does not hold."""

    def body(self, rec: Json, request: bool) -> Captured | None: ...


class RecordBodies:
    """The live sink's source: the bytes carried by this batch's records."""

    def __init__(self, records: Sequence[FlowRecord]) -> None:
        self._by_id: dict[str, CapturedBodies] = {
            r.id: r.bodies for r in records if r.bodies is not None
        }

    def body(self, rec: Json, request: bool) -> Captured | None:
        bodies = self._by_id.get(str(rec.get("id")))
        if bodies is None:
            return None
        data = bodies.request if request else bodies.response
        if data is None:
            return None
        cut = bodies.request_truncated if request else bodies.response_truncated
        return Captured(data, cut)


class FileBodies:
    """``tapproxy convert``'s source: the body file a record names.

    A relative ``body_file`` is tried from the current directory (where the
    proxy usually ran), then from the flow log's directory.
    """

    def __init__(self, log_dir: Path | None = None) -> None:
        self.log_dir = log_dir

    def body(self, rec: Json, request: bool) -> Captured | None:
        message = rec.get("request" if request else "response") or {}
        name = message.get("body_file")
        if not isinstance(name, str):
            return None
        path = Path(name)
        if not path.is_absolute() and not path.exists() and self.log_dir is not None:
            path = self.log_dir / path
        try:
            data = path.read_bytes()
        except OSError as e:
            return Captured(None, problem=f"body file {name} unreadable: {reason(e)}")
        return Captured(data, bool(message.get("body_file_truncated")))
