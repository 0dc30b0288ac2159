"""Errors the rule loader reports, each with its file position.

A rules file is edited by people and kept in git, so every problem is told
as ``file:line:column: path: message`` (lines and columns from 1), the form
editors and CI annotators understand. The loader collects every error it can
find in one pass instead of stopping at the first.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RuleError:
    """One problem in a rules file."""

    file: str
    line: int
    column: int
    path: str  # where in the document, e.g. "rules[2].match.path"
    message: str

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        return f"{self.file}:{self.line}:{self.column}: {where}{self.message}"


class RulesError(Exception):
    """Loading failed; ``errors`` lists every problem found, in file order."""

    def __init__(self, errors: Iterable[RuleError]) -> None:
        self.errors: tuple[RuleError, ...] = tuple(errors)
        super().__init__("\n".join(str(e) for e in self.errors) or "invalid rules")
