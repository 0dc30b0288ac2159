"""``--view-filter EXPR``: only the flows an expression matches reach the
console and the flow log (the filter language of docs/filters.md).

The expression is parsed as the option is read, so a bad one stops the
proxy at start (exit 2) with the column it went wrong at. Without the
option the outputs get no predicate and pay nothing per record.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any

from proxy.flow.record import FlowRecord
from proxy.flowfilter import Filter, FilterError, parse, record_subject
from proxy.sinks.console import NOT_A_FLOW


class FilterAction(argparse.Action):
    """Stores the parsed ``Filter``; a bad expression ends the program (exit 2)
    with the message and a caret under the column, without the usage text
    that would bury them."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        try:
            f = parse(str(values))
        except FilterError as e:
            parser.exit(2, f"{parser.prog}: {option_string}: {e}\n{e.pointer()}\n")
        setattr(namespace, self.dest, f)


def record_predicate(f: Filter | None) -> Callable[[FlowRecord], bool] | None:
    """What an output keeps: the records ``f`` matches, and records that are
    not flows (a rules reload error stays in the log); None without a filter."""
    if f is None:
        return None
    matches = f.matches
    warned: list[bool] = []

    def keep(r: FlowRecord) -> bool:
        if r.kind == NOT_A_FLOW or matches(record_subject(r)):
            return True
        if f.timeouts and not warned:  # once: a regex of the filter is pathological
            warned.append(True)
            print(
                f"tapproxy: --view-filter ran out of time on flow {r.id} (a regex that "
                "backtracks without end?); such flows are left out (docs/filters.md)",
                file=sys.stderr,
            )
        return False

    return keep
