"""Tokens of a filter expression (docs/filters.md, "Grammar").

The lexer knows no context: ``& | ! ( )`` are operators wherever a token
starts, ``~name`` is a filter, a quote starts a quoted value, and anything
else is a bare word running to the next space, parenthesis, ``&`` or ``|``.
A bare word keeps backslashes as they are (``\\d+`` is the regex ``\\d+``); in a
quoted value a backslash before the quote or another backslash stands for
that character and any other backslash is kept, so regexes need no doubling.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from proxy.flowfilter.errors import FilterError


class Tok(Enum):
    LPAREN = "("
    RPAREN = ")"
    AND = "&"
    OR = "|"
    NOT = "!"
    FILTER = "~"  # value: the filter's name, without the tilde
    WORD = "word"  # a bare word
    QUOTED = "quoted"  # a quoted value, its escapes undone
    END = "end"


_SINGLE = {"(": Tok.LPAREN, ")": Tok.RPAREN, "&": Tok.AND, "|": Tok.OR, "!": Tok.NOT}
#: Characters that end a bare word (besides whitespace).
WORD_STOPS = frozenset("()&|")
QUOTES = frozenset("\"'")


@dataclass(frozen=True, slots=True)
class Token:
    kind: Tok
    value: str
    column: int  # 1-based, of the token's first character
    end: int  # 1-based column just past the token


def tokenize(text: str) -> list[Token]:
    """All tokens of ``text``, ending with ``END``; ``FilterError`` for a bad one."""
    out: list[Token] = []
    i, n = 0, len(text)
    while True:
        while i < n and text[i].isspace():
            i += 1
        if i == n:
            out.append(Token(Tok.END, "", n + 1, n + 1))
            return out
        c = text[i]
        if c in _SINGLE:
            out.append(Token(_SINGLE[c], c, i + 1, i + 2))
            i += 1
        elif c == "~":
            j = i + 1
            while j < n and (text[j].isalnum() or text[j] == "_"):
                j += 1
            if j == i + 1:
                raise FilterError(f"expected a filter name after '~' at column {i + 1}", i + 1)
            out.append(Token(Tok.FILTER, text[i + 1 : j], i + 1, j + 1))
            i = j
        elif c in QUOTES:
            value, j = _quoted(text, i)
            out.append(Token(Tok.QUOTED, value, i + 1, j + 1))
            i = j
        else:
            j = i
            while j < n and not text[j].isspace() and text[j] not in WORD_STOPS:
                j += 1
            out.append(Token(Tok.WORD, text[i:j], i + 1, j + 1))
            i = j


def _quoted(text: str, start: int) -> tuple[str, int]:
    """The value of the quoted string at ``start`` and the index past it."""
    quote = text[start]
    parts: list[str] = []
    i, n = start + 1, len(text)
    while i < n:
        c = text[i]
        if c == quote:
            return "".join(parts), i + 1
        if c == "\\" and i + 1 < n:
            nxt = text[i + 1]
            parts.append(nxt if nxt in (quote, "\\") else c + nxt)
            i += 2
            continue
        parts.append(c)
        i += 1
    raise FilterError(
        f"unterminated string: the {quote} at column {start + 1} is never closed", start + 1
    )


def quote(value: str) -> str:
    """``value`` as the lexer reads it back: bare when it can be, else in
    double quotes with only the backslashes that need doubling doubled."""
    if _bare(value):
        return value
    out: list[str] = []
    for k, c in enumerate(value):
        if c == '"':
            out.append('\\"')
        elif c == "\\" and (k + 1 == len(value) or value[k + 1] in '"\\'):
            out.append("\\\\")
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


def _bare(value: str) -> bool:
    if not value or value[0] in QUOTES or value[0] in "~!":
        return False
    return all(c.isprintable() and not c.isspace() and c not in WORD_STOPS for c in value)
