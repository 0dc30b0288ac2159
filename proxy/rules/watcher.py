"""Hot reload decisions, without the polling loop.

``RulesWatcher.poll()`` looks at the rule files (folders re-listed each
time, so a new file is noticed), and reloads only when something changed:
first by (mtime, size) so an idle poll reads nothing, then by content so a
``touch`` or a checkout of the same text keeps the current ``RuleSet`` and
its ``times`` counters. A broken edit never replaces a working rule set:
the last good one stays current and the error is returned once per change.

The lead's asyncio loop is just::

    watcher = RulesWatcher(paths)          # raises RulesError at startup
    while True:
        result = watcher.poll()
        if result.error: log(result.error)
        elif result.changed: session_rules = result.ruleset
        await asyncio.sleep(1)
"""

from __future__ import annotations

import hashlib
import os
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from proxy.rules import body as codec
from proxy.rules.engine import RuleSet
from proxy.rules.errors import RulesError
from proxy.rules.loader import SourceText, expand, load_sources, read_sources

Stamp = tuple[int, int]  # (mtime_ns, size)


@dataclass(frozen=True, slots=True)
class Reload:
    """The outcome of one poll: the rule set to use, and what happened."""

    ruleset: RuleSet
    changed: bool = False  # a new rule set was loaded
    error: RulesError | None = None  # the files changed but do not load


def _stat(path: Path) -> Stamp | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


class RulesWatcher:
    """Keeps the current ``RuleSet`` for a list of rule paths."""

    def __init__(
        self,
        paths: Sequence[Path],
        *,
        stat: Callable[[Path], Stamp | None] = _stat,
        rng: Callable[[], float] = random.random,
        max_body: int = codec.DEFAULT_LIMIT,
    ) -> None:
        """Load the rules now (raising ``RulesError``) and remember the files' state."""
        self.paths = tuple(paths)
        self.stat = stat
        self.rng, self.max_body = rng, max_body
        self.stamps = self._stamps()  # before reading: a write in between shows next poll
        sources, errors = read_sources(self.paths)
        if errors:
            raise RulesError(errors)
        self.current = load_sources(sources, rng=rng, max_body=max_body)
        self.digest = _digest(sources)

    def _stamps(self) -> dict[Path, Stamp | None]:
        return {p: self.stat(p) for p in expand(self.paths)}

    def poll(self) -> Reload:
        """Reload if the files changed; keep the last good rules on error."""
        stamps = self._stamps()
        if stamps == self.stamps:
            return Reload(self.current)
        self.stamps = stamps
        sources, errors = read_sources(self.paths)
        if errors:
            return Reload(self.current, error=RulesError(errors))
        digest = _digest(sources)
        if digest == self.digest:
            return Reload(self.current)
        try:
            ruleset = load_sources(sources, rng=self.rng, max_body=self.max_body)
        except RulesError as e:
            return Reload(self.current, error=e)
        self.current, self.digest = ruleset, digest
        return Reload(ruleset, changed=True)


def _digest(sources: Sequence[SourceText]) -> str:
    h = hashlib.sha256()
    for s in sources:
        h.update(f"{s.path}\0{len(s.text)}\0".encode())
        h.update(s.text.encode())
    return h.hexdigest()
