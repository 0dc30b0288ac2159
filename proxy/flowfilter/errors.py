"""The one error a filter expression raises: what is wrong, and at which column."""

from __future__ import annotations


class FilterError(ValueError):
    """An expression that cannot be parsed or compiled.

    ``column`` is 1-based, in characters of the expression (a column one past
    the end means "the expression ended too soon"); the message names it, so
    ``str(error)`` alone is a complete diagnostic.
    """

    def __init__(self, message: str, column: int, expression: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.column = column
        self.expression = expression

    def pointer(self) -> str:
        """The expression with a caret under the column, for a terminal."""
        return f"  {self.expression}\n  {' ' * (self.column - 1)}^"
