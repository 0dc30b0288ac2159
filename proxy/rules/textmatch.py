"""Compiled string predicates: exact, prefix, glob and regex, any-of.

A field given a list of patterns matches when any of them does. The list is
compiled once into the cheapest test that is still exact: a ``frozenset``
for exact values, one ``str.startswith`` call with a tuple for prefixes, and
one combined alternation regex for globs and regexes. Combining is sound
because ``a|b`` searched anywhere matches exactly when ``a`` or ``b`` does;
it is skipped for patterns whose meaning depends on group numbers
(backreferences, conditionals) or that carry inline global flags.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

_NOT_COMBINABLE = re.compile(r"\\[1-9]|\(\?\(|\(\?P=|^\(\?[aiLmsux]+\)")


@dataclass(frozen=True, slots=True)
class Pattern:
    """One pattern as written: kind is exact, prefix, suffix, glob or regex."""

    kind: str
    text: str

    def __str__(self) -> str:
        return repr(self.text) if self.kind == "exact" else f"{self.kind} {self.text!r}"


def glob_regex(glob: str, segment_char: str | None) -> str:
    """Translate a glob: ``*`` any run, ``?`` one char, ``**`` across segments.

    With ``segment_char`` (``/`` for paths) a single ``*`` and ``?`` stop at
    that character and ``**`` crosses it; without it ``*`` crosses anything.
    """
    out: list[str] = []
    i = 0
    stop = f"[^{re.escape(segment_char)}]" if segment_char else "."
    while i < len(glob):
        if glob.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        c = glob[i]
        out.append(stop + "*" if c == "*" else stop if c == "?" else re.escape(c))
        i += 1
    return r"\A(?:" + "".join(out) + r")\Z"


class StrPred:
    """Does a string satisfy any of a list of patterns?"""

    __slots__ = ("exact", "patterns", "prefixes", "regex", "regexes", "source", "suffixes", "text")

    def __init__(
        self, patterns: Sequence[Pattern], ignore_case: bool = False, segment: str | None = None
    ) -> None:
        fold: Callable[[str], str] = str.lower if ignore_case else str
        flags = re.IGNORECASE if ignore_case else 0
        self.exact = frozenset(fold(p.text) for p in patterns if p.kind == "exact")
        self.prefixes = tuple(fold(p.text) for p in patterns if p.kind == "prefix")
        self.suffixes = tuple(fold(p.text) for p in patterns if p.kind == "suffix")
        sources = [
            glob_regex(fold(p.text), segment) if p.kind == "glob" else p.text
            for p in patterns
            if p.kind in ("glob", "regex")
        ]
        self.regex, self.regexes = _combine(sources, flags)
        self.source = _one_source(patterns, sources, fold)
        self.patterns = tuple(patterns)
        self.text = " or ".join(str(p) for p in patterns)

    def __call__(self, value: str) -> bool:
        if value in self.exact:
            return True
        if self.prefixes and value.startswith(self.prefixes):
            return True
        if self.suffixes and value.endswith(self.suffixes):
            return True
        if self.regex is not None and self.regex.search(value) is not None:
            return True
        return any(r.search(value) is not None for r in self.regexes)


def _combine(
    sources: list[str], flags: int
) -> tuple[re.Pattern[str] | None, tuple[re.Pattern[str], ...]]:
    """One alternation for the combinable sources, the rest compiled alone."""
    together = [s for s in sources if not _NOT_COMBINABLE.search(s)]
    alone = [s for s in sources if _NOT_COMBINABLE.search(s)]
    combined = None
    if together:
        try:
            combined = re.compile("|".join(f"(?:{s})" for s in together), flags)
        except re.error:  # e.g. the same group name in two patterns
            alone = sources
    return combined if len(alone) < len(sources) else None, tuple(
        re.compile(s, flags) for s in alone
    )


def _one_source(
    patterns: Sequence[Pattern], sources: list[str], fold: Callable[[str], str]
) -> str | None:
    """The whole predicate as one regex source (for the index), if combinable."""
    if any(_NOT_COMBINABLE.search(s) for s in sources):
        return None
    parts = [rf"\A{re.escape(fold(p.text))}\Z" for p in patterns if p.kind == "exact"]
    parts += [rf"\A{re.escape(fold(p.text))}" for p in patterns if p.kind == "prefix"]
    parts += [rf"{re.escape(fold(p.text))}\Z" for p in patterns if p.kind == "suffix"]
    return "|".join(f"(?:{s})" for s in parts + sources)


def check_regex(text: str, flags: int = 0, as_bytes: bool = False) -> str | None:
    """The compile error of a regex, or ``None`` when it is valid.

    ``as_bytes``: the pattern will be compiled for bytes (bodies, TCP data),
    where some escapes valid in text patterns (``\\u``, ``\\N{...}``) are errors.
    """
    try:
        re.compile(text.encode("utf-8", "surrogateescape") if as_bytes else text, flags)
    except re.error as e:
        return f"invalid regex: {e}"
    except (OverflowError, RecursionError, ValueError) as e:
        return f"invalid regex: {e}"
    return None


_TEMPLATE_ESCAPE = re.compile(r"\\(?:g<([^>]*)>|([0-9]{1,2})|(.)|$)", re.DOTALL)


def check_template(template: str, pattern: re.Pattern[str] | re.Pattern[bytes]) -> str | None:
    """Check a ``re.sub`` template's group references against ``pattern``.

    Done at load time so a typo in ``\\2`` is reported with its position
    instead of failing on the first request that matches.
    """
    for m in _TEMPLATE_ESCAPE.finditer(template):
        name, digits, other = m.groups()
        if name is not None:
            ok = int(name) <= pattern.groups if name.isdigit() else name in pattern.groupindex
            if not ok:
                return f"template refers to unknown group '{name}'"
        elif digits is not None:
            if not digits.startswith("0") and int(digits) > pattern.groups:
                return f"template refers to group {digits}, the regex has {pattern.groups}"
        elif other is None:
            return "template ends with a lone backslash"
        elif other.isascii() and other.isalpha() and other not in "abfnrtv":
            return f"bad escape '\\{other}' in template"
    return None
