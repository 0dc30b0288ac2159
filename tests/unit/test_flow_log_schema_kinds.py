"""The shipped JSON Schema takes the records that the live tests cannot easily
produce: analyze's own close reasons, sniff's capture-stats line, a rule's close."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from proxy.cli.sniff_cmd import _summary
from proxy.flow.jsonview import record_to_json
from proxy.flow.record import FlowRecord, TunnelInfo
from proxy.pcap.live import KernelStats
from proxy.pcap.sniff import SniffStats

SCHEMA = json.loads((Path(__file__).parents[2] / "docs" / "flow-log.schema.json").read_text())


@pytest.mark.parametrize("close", ["fin", "rst", "eof", "timeout", "evicted", "rule"])
def test_every_close_reason_validates(close: str) -> None:
    record = FlowRecord(
        "1-1", "tcp", "capture", 1.0, 2.0, ("10.0.0.1", 1), ("10.0.0.2", 2),
        tunnel=TunnelInfo(1, 2, close, "fin"),
    )  # fmt: skip
    jsonschema.validate(record_to_json(record), SCHEMA)


def test_an_unknown_close_reason_is_refused() -> None:
    record = FlowRecord(
        "1-1", "tcp", "capture", 1.0, 2.0, ("10.0.0.1", 1), None,
        tunnel=TunnelInfo(1, 2, "vanished", "fin"),
    )  # fmt: skip
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(record_to_json(record), SCHEMA)


def test_sniffs_capture_stats_line_validates() -> None:
    stats = SniffStats(started=10.0, ended=12.5, read=1000, kernel=KernelStats(1002, 2))
    stats.analyze.filtered_out, stats.analyze.records = 7, 12
    line = _summary("veth0", stats)
    jsonschema.validate(line, SCHEMA)
    line["kernel_drops"] = -1
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(line, SCHEMA)
