#!/usr/bin/env python3
"""Fuzz target ``rules``: the YAML rule loader (proxy/rules).

Run:  python tests/fuzz/fuzz_rules.py tests/fuzz/corpus/rules -dict=tests/fuzz/dicts/rules.dict

The input is the text of one rules file (UTF-8; bytes that are not UTF-8 are
read as latin-1 so that mutations still reach the YAML reader), loaded with
``load_sources`` as if it were ``rules/examples/fuzz.yaml``, so the examples'
relative paths (``mocks/``, ``site/``) resolve. Checks:

* the loader returns a ``RuleSet`` or raises ``RulesError``, nothing else,
  and every ``RuleError`` has a line and column from 1;
* a loaded rule set can be used as the session uses it, without raising:
  ``on_request`` for a few requests (with ``complete_request`` when a rule
  waits for the body), ``apply_head``, ``apply_body``, ``on_response`` /
  ``complete_response`` / ``apply_head`` / ``apply_body``, and ``tcp_for``
  with its transformers fed, ticked and closed.

The random source is fixed, so ``percent`` rules behave the same on every run.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.fuzz._harness import REPO, fuzz_main, instrumented

with instrumented(__name__ == "__main__"):
    from proxy.rules import RequestInfo, RulesError, RuleSet, SourceText, load_sources

TARGET = "rules"
SOURCE = REPO / "rules" / "examples" / "fuzz.yaml"
JSON = ((b"content-type", b"application/json"),)
REQUESTS = (
    (
        RequestInfo(
            "https", "api.svc", 443, "GET", "/v1/x", "a=1", ((b"host", b"api.svc"),), "10.0.0.1"
        ),
        b"{}",
    ),
    (
        RequestInfo(
            "http", "www.example.com", 80, "POST", "/static/index.html", "",
            ((b"Host", b"www.example.com"), *JSON), "::1",
        ),
        b'{"items": [1, 2], "user": {"name": "a"}}',
    ),
)  # fmt: skip


def text_of(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def exercise(rs: RuleSet) -> None:
    """Use a loaded rule set the way the session does; nothing may raise."""
    for info, body in REQUESTS:
        plan = rs.on_request(info)
        if plan.pending:
            plan = rs.complete_request(plan, body)
        plan.apply_head()
        plan.apply_body(body, info.fields)
        for status in (200, 503):
            rplan = rs.on_response(plan, status, JSON)
            if rplan.pending:
                rplan = rs.complete_response(rplan, body)
            result = rplan.apply_head(status, JSON)
            rplan.apply_body(body, result.fields)
    for host, port in (("api.svc", 443), ("db.svc", 5432)):
        tcp = rs.tcp_for(host, port, client_ip="10.0.0.1")
        for t in (tcp.upstream, tcp.downstream):
            t.start(0.0)
            t.feed(0.0, b"SELECT 1;\r\n")
            t.tick(5.0)
            t.eof(10.0)
            t.tick(1000.0)


def one_input(data: bytes) -> None:
    try:
        rs = load_sources([SourceText(SOURCE, text_of(data))], rng=lambda: 0.25)
    except RulesError as e:
        assert e.errors, "RulesError without errors"
        for err in e.errors:
            assert err.line >= 1 and err.column >= 1, err
        return
    assert isinstance(rs, RuleSet), rs
    exercise(rs)


if __name__ == "__main__":
    fuzz_main(one_input)
