"""Collecting per-run figures and printing them as Markdown tables.

Each figure is kept per run; a cell shows the median and, with more than one
run, ``(min-max)``. Ratios are computed inside each run (peer / reference of
that same run) and summarised the same way. A peer that could not run shows
its reason in the notes column instead of numbers.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass, field


def fmt_num(x: float, digits: int = 0) -> str:
    if digits == 0 and abs(x) >= 100:
        return f"{x:.0f}"
    if digits == 0:
        return f"{x:.3g}" if abs(x) < 10 else f"{x:.0f}"
    return f"{x:.{digits}f}"


def summarise(values: list[float], digits: int = 0) -> str:
    if not values:
        return "—"
    med = statistics.median(values)
    if len(values) == 1:
        return fmt_num(med, digits)
    lo, hi = fmt_num(min(values), digits), fmt_num(max(values), digits)
    return f"{fmt_num(med, digits)} ({lo}\u2013{hi})"


@dataclass
class Column:
    key: str
    title: str
    digits: int = 0


@dataclass
class Table:
    title: str
    columns: list[Column]
    rows: list[str]
    values: dict[str, dict[str, list[float]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(list))
    )
    notes: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    footnotes: list[str] = field(default_factory=list)

    def add(self, row: str, key: str, value: float | None) -> None:
        if value is not None:
            self.values[row][key].append(value)

    def note(self, row: str, text: str) -> None:
        text = " ".join(text.split())
        if len(text) > 240:
            text = text[:237] + "..."
        if text and text not in self.notes[row]:
            self.notes[row].append(text)

    def add_ratio(self, key: str, run_values: dict[str, float], reference: str) -> None:
        """Per-run ratio of every row's value to ``reference``'s in that run."""
        ref = run_values.get(reference)
        if not ref:
            return
        for row, v in run_values.items():
            self.add(row, key, v / ref)

    def median(self, row: str, key: str) -> float | None:
        vals = self.values.get(row, {}).get(key)
        return statistics.median(vals) if vals else None

    def range(self, row: str, key: str) -> tuple[float, float] | None:
        vals = self.values.get(row, {}).get(key)
        return (min(vals), max(vals)) if vals else None

    def markdown(self) -> str:
        head = ["peer", *(c.title for c in self.columns), "notes"]
        lines = [
            f"### {self.title}",
            "",
            "| " + " | ".join(head) + " |",
            "| --- | " + " | ".join("---:" for _ in self.columns) + " | --- |",
        ]
        for row in self.rows:
            cells = [
                summarise(self.values.get(row, {}).get(c.key, []), c.digits) for c in self.columns
            ]
            note = "; ".join(self.notes.get(row, [])).replace("|", "/").replace("\n", " ")
            lines.append("| " + " | ".join([row, *cells, note]) + " |")
        if self.footnotes:
            lines.append("")
            lines += self.footnotes
        return "\n".join(lines) + "\n"
