"""Text patterns of a rule: exact, prefix, glob, suffix or regex, with positioned errors.

Plain text with ``*`` or ``?`` is a glob; ``{prefix: ...}``, ``{glob: ...}``,
``{regex: ...}`` say which. Shared by the HTTP, gRPC and TCP matchers.
"""

from __future__ import annotations

import re

from yaml.nodes import MappingNode, Node

from proxy.rules.textmatch import Pattern, check_regex
from proxy.rules.yamlnodes import Doc, check_keys, items, mapping, string


def patterns(
    doc: Doc, node: Node, path: str, kinds: tuple[str, ...], fold: bool = False
) -> list[Pattern] | None:
    """One pattern or a list of them; plain text with ``*``/``?`` is a glob."""
    out: list[Pattern] = []
    for item, sub in items(node, path):
        pat = pattern(doc, item, sub, kinds, fold)
        if pat is None:
            return None
        out.append(pat)
    if not out:
        doc.error(node, path, "expected at least one value")
        return None
    return out


def pattern(doc: Doc, node: Node, path: str, kinds: tuple[str, ...], fold: bool) -> Pattern | None:
    if isinstance(node, MappingNode):
        entries = mapping(doc, node, path)
        if entries is None or not check_keys(doc, entries, node, path, kinds, what="matcher"):
            return None
        if len(entries) != 1:
            doc.error(node, path, f"expected exactly one of {', '.join(kinds)}")
            return None
        ((kind, (_, node)),) = entries.items()
        path = f"{path}.{kind}"
        text = string(doc, node, path)
    else:
        text = string(doc, node, path)
        kind = "glob" if text and "glob" in kinds and ("*" in text or "?" in text) else "exact"
    if text is None:
        return None
    if kind == "regex":
        error = check_regex(text, re.IGNORECASE if fold else 0)
        if error:
            doc.error(node, path, error)
            return None
    text = text.lower() if fold and kind != "regex" else text
    if kind == "glob" and re.fullmatch(r"\*\.[^*?]+", text):
        return Pattern("suffix", text[1:])  # "*.svc": a plain suffix test, and indexable
    return Pattern(kind, text)
