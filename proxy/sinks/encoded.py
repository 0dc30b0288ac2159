"""A batch's records as compact JSON, encoded once for every sink that writes them.

The dispatcher hands the same list of records to each prepared sink in turn
(``proxy.sinks.dispatch``). The flow log and the web UI's store both write
each record's flow-log JSON; encoding is most of their cost on the loop
(~10 µs a record), so the first of them encodes and the other takes the
same bytes. The list is kept until the next batch (one slice of records)
so that its identity cannot be taken by another list meanwhile.
"""

from __future__ import annotations

from collections.abc import Sequence

from proxy.flow.jsonview import record_to_json
from proxy.flow.record import FlowRecord
from proxy.sinks.jsonenc import dumps


class EncodedRecords:
    __slots__ = ("_lines", "_records")

    def __init__(self) -> None:
        self._records: Sequence[FlowRecord] | None = None
        self._lines: list[bytes] = []

    def lines(self, records: Sequence[FlowRecord]) -> list[bytes]:
        """``dumps(record_to_json(r))`` for each record, in order."""
        if records is not self._records:
            self._records = records
            self._lines = [dumps(record_to_json(r)) for r in records]
        return self._lines
