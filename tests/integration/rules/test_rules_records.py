"""Records tell the truth when rules change a flow (issue 14, item 2).

The top-level ``request`` is what the client sent and ``response`` what the
client got; ``request.forwarded`` and ``response.upstream`` say what went to
and came from the server, present only when a rule or hook changed them. The
console line and the HAR show what the client got. Every record here is
checked against the shipped JSON Schema.
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema

from tests.integration.rules_support import Origin, curl, record_for, rules_proxy

SCHEMA = json.loads((Path(__file__).parents[3] / "docs" / "flow-log.schema.json").read_text())

EDITS = """\
version: 1
rules:
  - name: edit-both
    match: {host: shop.test}
    request:
      - set_header: {x-added: "by-rule"}
      - replace_body: {literal: prod, with: development}
    response:
      - json_patch: [{op: replace, path: /total, value: 0}]
      - set_header: {x-edited: "yes"}
"""


def with_rules(tmp: Path, text: str) -> None:
    """The rules under test, loaded before the route to the origin (name order)."""
    d = tmp / "rules"
    d.mkdir()
    (d / "05-under-test.yaml").write_text(text)


def headers_of(message: dict[str, object]) -> dict[str, str]:
    return {k.lower(): v for k, v in message["headers"]}  # type: ignore[attr-defined]


def test_edited_request_and_response_are_recorded_both_ways(tmp_path: Path, origin: Origin) -> None:
    origin.reply("/cart", body={"total": 12345, "items": [1, 2]})
    with_rules(tmp_path, EDITS)
    with rules_proxy(tmp_path, origin=origin, args=("--har", str(tmp_path / "s.har"))) as p:
        r = curl(p, "http://shop.test/cart", "-d", "env=prod", "-H", "Content-Type: text/plain")
        assert r.status == 200 and json.loads(r.body) == {"total": 0, "items": [1, 2]}
        rec = record_for(p, "/cart")
    jsonschema.validate(rec, SCHEMA)
    assert rec["schema"] == 3
    # What the client sent, and what went upstream.
    req = rec["request"]
    assert req["url"] == "http://shop.test/cart"
    assert "x-added" not in headers_of(req)
    assert req["body_size"] == len("env=prod") and req["body_preview"]["data"] == "env=prod"
    fwd = req["forwarded"]
    assert fwd["url"] == f"{origin.url}/cart"
    assert headers_of(fwd)["x-added"] == "by-rule"
    assert fwd["body_size"] == len("env=development")
    assert fwd["body_preview"]["data"] == "env=development"
    assert origin.seen[-1].body == b"env=development"  # the record says what really went
    # What the client got, and what the server sent.
    resp = rec["response"]
    delivered = json.dumps({"total": 0, "items": [1, 2]}, separators=(",", ":"))
    assert resp["source"] == "upstream"
    assert headers_of(resp)["x-edited"] == "yes"
    assert headers_of(resp)["content-length"] == str(len(r.body))
    assert resp["body_size"] == len(r.body) and json.loads(
        resp["body_preview"]["data"]
    ) == json.loads(delivered)
    up = resp["upstream"]
    assert "x-edited" not in headers_of(up)
    assert json.loads(up["body_preview"]["data"]) == {"total": 12345, "items": [1, 2]}
    assert up["body_size"] != resp["body_size"]
    # The HAR shows what the client got.
    har = json.loads((tmp_path / "s.har").read_text())
    (entry,) = [e for e in har["log"]["entries"] if e["request"]["url"].endswith("/cart")]
    assert entry["response"]["content"]["size"] == len(r.body)


def test_untouched_flows_carry_no_second_version(tmp_path: Path, origin: Origin) -> None:
    origin.reply("/plain", body=b"as is")
    with rules_proxy(tmp_path, origin=origin, keep_host=True) as p:
        r = curl(p, "http://plain.test/plain")
        assert r.body == b"as is"
        rec = record_for(p, "/plain")
    jsonschema.validate(rec, SCHEMA)
    # The route rule sent it elsewhere: that is a change, and the record says where.
    assert rec["request"]["forwarded"]["url"] == f"{origin.url}/plain"
    assert "upstream" not in rec["response"] and rec["response"]["source"] == "upstream"


def test_a_mock_is_made_by_the_proxy(tmp_path: Path, origin: Origin) -> None:
    with_rules(
        tmp_path,
        "version: 1\nrules:\n  - name: stub\n    match: {host: mock.test}\n"
        "    respond: {status: 201, body: made up}\n",
    )
    with rules_proxy(tmp_path, origin=origin) as p:
        r = curl(p, "http://mock.test/x")
        assert (r.status, r.body) == (201, b"made up")
        rec = record_for(p, "mock.test/x")
    jsonschema.validate(rec, SCHEMA)
    assert rec["response"]["source"] == "proxy" and "upstream" not in rec["response"]
    assert rec["response"]["body_size"] == len(b"made up")
    assert "forwarded" not in rec["request"]
