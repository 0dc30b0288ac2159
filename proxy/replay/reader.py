"""Reading recorded flows: a recording, a flow log (with its body files), or a HAR.

The input's kind is told by its first bytes: a gzip member is a recording
(``proxy.replay.writer``); text is a HAR when it parses as one JSON object
with ``log.entries``, else JSON Lines: a recording written plain (a header
line first) or a flow log (records carry ``schema``).

A recording is read member by member; a member cut short (the proxy was
killed while writing it) ends the reading, and every flow before it is
kept: ``Loaded.cut`` says so. Lines that are not flows are counted in
``Loaded.skipped`` with the first few reasons.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from proxy.replay.flowlog import flow_from_log
from proxy.replay.format import FormatError, Json, RecordedFlow, check_header, flow_of
from proxy.replay.har_import import flows_from_har

CHUNK = 1 << 20
GZIP_MAGIC = b"\x1f\x8b"


@dataclass
class Loaded:
    kind: str  # "recording", "flow log", "har"
    flows: list[RecordedFlow] = field(default_factory=list)
    cut: bool = False  # the recording ends in a member cut short (a crash while writing)
    dropped: int = 0  # flows the proxy could not record (its queue was full)
    skipped: int = 0
    problems: list[str] = field(default_factory=list)

    def skip(self, where: str, why: str) -> None:
        self.skipped += 1
        if len(self.problems) < 5:
            self.problems.append(f"{where}: {why}")


def gzip_members(f: IO[bytes]) -> Iterator[bytes | None]:
    """The text of each complete gzip member; None once for a member cut short."""
    d = zlib.decompressobj(31)
    parts: list[bytes] = []
    pending = b""
    while True:
        data = pending or f.read(CHUNK)
        pending = b""
        if not data:
            if parts or d.unconsumed_tail:
                yield None  # a member began and never ended
            return
        try:
            parts.append(d.decompress(data))
        except zlib.error:
            yield None
            return
        if d.eof:
            yield b"".join(parts)
            parts = []
            pending = d.unused_data
            d = zlib.decompressobj(31)
            if not pending:
                continue


def _lines(members: Iterator[bytes | None], loaded: Loaded) -> Iterator[bytes]:
    for text in members:
        if text is None:
            loaded.cut = True
            return
        yield from text.splitlines()


def _read_lines(lines: Iterator[bytes], loaded: Loaded, log_dir: Path | None) -> None:
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            loaded.skip(f"line {lineno}", "not JSON (cut short?)")
            continue
        if not isinstance(obj, dict):
            loaded.skip(f"line {lineno}", "not a JSON object")
            continue
        _take(obj, loaded, log_dir, lineno)


def _take(obj: Json, loaded: Loaded, log_dir: Path | None, lineno: int) -> None:
    kind = obj.get("type")
    if kind == "header":
        check_header(obj)  # a schema we do not know stops the reading
    elif kind == "dropped" or obj.get("kind") == "dropped":
        loaded.dropped += int(obj.get("count") or 0)
    elif kind == "flow":
        try:
            loaded.flows.append(flow_of(obj))
        except FormatError as e:
            loaded.skip(f"line {lineno}", str(e))
    elif "schema" in obj:
        loaded.kind = "flow log"
        try:
            flow = flow_from_log(obj, log_dir)
        except (KeyError, TypeError, ValueError) as e:
            loaded.skip(f"line {lineno}", f"not a flow record: {type(e).__name__}: {e}")
            return
        if flow is not None:
            loaded.flows.append(flow)
    else:
        loaded.skip(f"line {lineno}", "neither a recorded flow nor a flow record")


def load(path: str | Path) -> Loaded:
    """Every flow of ``path`` (recording, flow log or HAR); FormatError when it is none."""
    path = Path(path)
    with open(path, "rb") as f:
        start = f.read(2)
        f.seek(0)
        if start == GZIP_MAGIC:
            loaded = Loaded("recording")
            _read_lines(_lines(gzip_members(f), loaded), loaded, path.parent)
            return loaded
        text = f.read()
    stripped = text.lstrip()
    if stripped.startswith(b"{") and b'"log"' in stripped[:4096]:
        try:
            doc = json.loads(text)
        except json.JSONDecodeError:
            doc = None
        if isinstance(doc, dict) and isinstance(doc.get("log"), dict):
            loaded = Loaded("har")
            loaded.flows, problems = flows_from_har(doc)
            for where, why in problems:
                loaded.skip(where, why)
            return loaded
    loaded = Loaded("recording")
    _read_lines(iter(text.splitlines()), loaded, path.parent)
    if not loaded.flows and loaded.skipped:
        raise FormatError(f"{path}: not a recording, flow log or HAR ({loaded.problems[0]})")
    return loaded
