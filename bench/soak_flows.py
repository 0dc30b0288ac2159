"""The soak's flow log, counted: what the records say, to reconcile with the clients.

Every ``flows.jsonl*`` file (the log is rotated) is read after the proxy
exited: ``http`` records with no error, with an error from a faulty upstream,
with any other error; slow heads the proxy closed; tunnels; other kinds and
unreadable lines.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class FlowCount:
    records: int = 0
    http_ok: int = 0
    http_fault: int = 0  # error set, to a faulty upstream
    http_error_other: int = 0  # error set, anywhere else
    head_timeouts: int = 0  # `client: timeout (client_head) ...`: a head that never completed
    tunnels: int = 0
    tunnels_error: int = 0
    other: Counter[str] = field(default_factory=Counter)
    unreadable: int = 0
    files: int = 0
    errors: Counter[str] = field(default_factory=Counter)  # other errors, normalized


def count_flows(directory: Path, fault_ports: set[int]) -> FlowCount:
    fc = FlowCount()
    files = sorted(directory.glob("flows.jsonl*"))
    fc.files = len(files)
    for path in files:
        with path.open("rb") as f:
            for line in f:
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except ValueError:
                    fc.unreadable += 1
                    continue
                fc.records += 1
                kind = rec.get("kind")
                err = rec.get("error")
                if kind == "http" and str(err).startswith("client: timeout (client_head)"):
                    fc.head_timeouts += 1
                elif kind == "http":
                    m = re.match(r"\w+://[^/:]+:(\d+)", rec.get("request", {}).get("url", ""))
                    port = int(m.group(1)) if m else 0
                    if err is None:
                        fc.http_ok += 1
                    elif port in fault_ports:
                        fc.http_fault += 1
                    else:
                        fc.http_error_other += 1
                        fc.errors[re.sub(r"\d{3,}", "N", f"http: {err}")] += 1
                elif kind == "tunnel":
                    fc.tunnels += 1
                    if err is not None:
                        fc.tunnels_error += 1
                        fc.errors[re.sub(r"\d{3,}", "N", f"tunnel: {err}")] += 1
                else:
                    fc.other[str(kind)] += 1
    return fc
