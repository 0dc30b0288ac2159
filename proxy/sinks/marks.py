"""What rules did to a flow, as short console marks ("mocked by stub").

The flow record's rules info lists each matched rule with its action notes
(``proxy.rules.run``: "respond 200", "block 403", "block close",
"fault abort 503", "fault reset", "fault hang", "fault delay 400ms±0",
"map_local ..."). A user reading the console without ``-v`` must still see
that a response did not come from the server as it was, so these notes are
turned into a few words on the flow line.
"""

from __future__ import annotations

from enum import Enum

from proxy.flow.record import RulesInfo

__all__ = ["Effect", "effects", "marks"]


class Effect(Enum):
    """A rule effect worth a mark; the value is the word shown."""

    MOCKED = "mocked"
    BLOCKED = "blocked"
    ABORTED = "aborted"
    RESET = "reset"
    HUNG = "hung"
    DELAYED = "delayed"
    THROTTLED = "throttled"
    CUT = "cut"


# Action-note prefixes, most specific first.
_PREFIXES = (
    ("respond ", Effect.MOCKED),
    ("map_local ", Effect.MOCKED),
    ("block ", Effect.BLOCKED),
    ("fault abort", Effect.ABORTED),
    ("fault reset", Effect.RESET),
    ("fault hang", Effect.HUNG),
    ("fault delay", Effect.DELAYED),
    ("fault bandwidth", Effect.THROTTLED),
    ("fault close_after", Effect.CUT),
)


def effect_of(note: str) -> Effect | None:
    """The effect an action note stands for, or None for an edit."""
    for prefix, effect in _PREFIXES:
        if note.startswith(prefix):
            return effect
    return None


def effects(rules: RulesInfo | None) -> list[tuple[Effect, str]]:
    """Each marked effect with the rule that had it, in rule order."""
    out: list[tuple[Effect, str]] = []
    for name, _source, actions in rules.matched if rules is not None else ():
        for note in actions:
            effect = effect_of(note)
            if effect is not None and (effect, name) not in out:
                out.append((effect, name))
    return out


def marks(rules: RulesInfo | None) -> str:
    """`` [mocked by stub, delayed by slow]``, or "" when no rule had an effect."""
    found = effects(rules)
    if not found:
        return ""
    return " [" + ", ".join(f"{e.value} by {name}" for e, name in found) + "]"
