"""The replay report: a summary line, then each flow that differed, in Markdown and JSON.

The JSON report carries ``schema_version`` (docs/replay.md); its ``flows``
list has every replayed flow with ``result`` one of ``same``, ``differs``,
``failed`` (no response) or ``skipped`` (not sent, and why).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from proxy.replay.client import Outcome

REPORT_SCHEMA_VERSION = 1


def result(o: Outcome) -> str:
    if o.skipped is not None:
        return "skipped"
    if o.error is not None:
        return "failed"
    return "differs" if o.differences else "same"


def counts(outcomes: Sequence[Outcome]) -> dict[str, int]:
    out = {"replayed": 0, "same": 0, "differs": 0, "failed": 0, "skipped": 0}
    for o in outcomes:
        r = result(o)
        out[r] += 1
        if r != "skipped":
            out["replayed"] += 1
    return out


def summary_line(outcomes: Sequence[Outcome]) -> str:
    c = counts(outcomes)
    return (
        f"{c['replayed']} replayed: {c['same']} same, {c['differs']} differ, "
        f"{c['failed']} failed; {c['skipped']} skipped"
    )


def _method(o: Outcome) -> str:
    return o.flow.request.method.decode("latin-1") if o.flow.request else "-"


def markdown(outcomes: Sequence[Outcome], source: str, target: str) -> str:
    lines = [
        "# tapproxy replay report",
        "",
        f"Recording `{source}` replayed against `{target}`.",
        "",
        f"**{summary_line(outcomes)}**",
        "",
    ]
    bad = [o for o in outcomes if result(o) in ("differs", "failed")]
    if bad:
        lines += ["## Differences", ""]
    for n, o in enumerate(bad, 1):
        lines.append(f"### {n}. {_method(o)} {o.url} (flow `{o.flow.id}`)")
        lines.append("")
        found = [o.error] if o.error else o.differences.lines() if o.differences else []
        for d in found:
            if "\n" in d:
                head, _, rest = d.partition("\n")
                lines += [f"- {head}", "", "```diff", rest, "```"]
            else:
                lines.append(f"- {d}")
        lines.append("")
    skipped = [o for o in outcomes if o.skipped is not None]
    if skipped:
        lines += ["## Skipped", ""]
        lines += [f"- {_method(o)} {o.url} (flow `{o.flow.id}`): {o.skipped}" for o in skipped]
        lines.append("")
    return "\n".join(lines)


def json_report(outcomes: Sequence[Outcome], source: str, target: str) -> dict[str, Any]:
    return {
        "schema_version": REPORT_SCHEMA_VERSION,
        "source": source,
        "target": target,
        "summary": summary_line(outcomes),
        "counts": counts(outcomes),
        "flows": [
            {
                "id": o.flow.id,
                "method": _method(o),
                "url": o.url,
                "result": result(o),
                "differences": o.differences.lines() if o.differences else [],
                "error": o.error,
                "skipped": o.skipped,
                "seconds": round(o.seconds, 6),
            }
            for o in outcomes
        ],
    }
