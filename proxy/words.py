"""Counts in messages: "1 rule", "2 rules", never "1 rules"."""

from __future__ import annotations

__all__ = ["plural"]


def plural(n: int, singular: str, many: str | None = None) -> str:
    """``n`` and the noun in the right number (``many`` defaults to ``singular + "s"``)."""
    word = singular if n == 1 else (many if many is not None else singular + "s")
    return f"{n} {word}"
