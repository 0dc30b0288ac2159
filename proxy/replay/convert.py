"""Writing recorded flows as a recording, a HAR, or a flow log with body files.

The HAR and the flow log go through the writers the live proxy uses
(``proxy.sinks.har.HarLog``, ``proxy.flow.jsonview``, ``proxy.sinks.bodies``)
on the flows turned back into records (``proxy.replay.toflow``), so a
converted file reads like one the proxy wrote.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import IO

from proxy import __version__
from proxy.flow.jsonview import record_to_json
from proxy.replay.format import RecordedFlow, flow_json, header_line
from proxy.replay.toflow import flow_record
from proxy.replay.writer import gzip_member
from proxy.sinks.bodies import BodyFileSink
from proxy.sinks.har import HarLog
from proxy.sinks.har_bodies import RecordBodies
from proxy.sinks.jsonenc import dumps

#: Flows per gzip member of a converted recording.
PER_MEMBER = 64


def write_recording(flows: Sequence[RecordedFlow], out: IO[bytes]) -> int:
    out.write(gzip_member(dumps(header_line(time.time(), __version__)) + b"\n"))
    for i in range(0, len(flows), PER_MEMBER):
        lines = [dumps(flow_json(f)) + b"\n" for f in flows[i : i + PER_MEMBER]]
        out.write(gzip_member(b"".join(lines)))
    return len(flows)


def write_har(flows: Sequence[RecordedFlow], out: IO[bytes]) -> HarLog:
    log = HarLog()
    out.write(log.head())
    for i in range(0, len(flows), PER_MEMBER):
        records = [flow_record(f) for f in flows[i : i + PER_MEMBER]]
        out.write(log.add([record_to_json(r) for r in records], RecordBodies(records)))
    out.write(log.tail())
    return log


def write_flow_log(flows: Sequence[RecordedFlow], out: IO[bytes], bodies_dir: str) -> int:
    """Flow records; bodies longer than the preview go to files in ``bodies_dir``."""
    sink = BodyFileSink()
    for i in range(0, len(flows), PER_MEMBER):
        records = [flow_record(f, bodies_dir) for f in flows[i : i + PER_MEMBER]]
        sink.write_prepared(sink.prepare(records))
        out.write(b"".join(dumps(record_to_json(r)) + b"\n" for r in records))
    return sink.lost
