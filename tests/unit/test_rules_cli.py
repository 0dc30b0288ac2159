"""``tapproxy rules check`` and ``tapproxy rules explain``."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.cli.rules_cmd import main, parse_request

EXAMPLES = Path(__file__).resolve().parents[2] / "rules" / "examples"


def test_check_ok(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(EXAMPLES)]) == 0
    assert capsys.readouterr().out.startswith("ok: ")


def test_check_reports_positions_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "dev.yaml"
    bad.write_text("version: 1\nrules:\n  - match: {path: {prefx: /v1}}\n    log: {}\n")
    assert main(["check", str(bad)]) == 1
    err = capsys.readouterr().err.strip()
    assert err == (
        f"{bad}:3:20: rules[0].match.path: unknown matcher 'prefx' (did you mean 'prefix'?); "
        "expected one of exact, prefix, glob, regex"
    )


def test_usage_error_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check"]) == 2
    assert main(["frobnicate"]) == 2


def test_explain_shows_matches_reasons_and_result(capsys: pytest.CaptureFixture[str]) -> None:
    files = [str(EXAMPLES / "headers.yaml"), str(EXAMPLES / "respond.yaml")]
    assert (
        main(["explain", *files, "GET https://api.eu.svc/v1/users?id=3", "-H", "x-debug: 1"]) == 0
    )
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "GET https://api.eu.svc/v1/users?id=3"
    assert "MATCH debug-header" in out
    assert "cors-for-local-ui  host is 'api.svc' (got 'api.eu.svc')" in out
    assert "MATCH mock-users" in out
    assert "health             path is '/healthz' (got '/v1/users')" in out
    assert "result: respond: answer 200 from" in out


def test_explain_not_reached_and_response(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = tmp_path / "r.yaml"
    rules.write_text(
        "version: 1\nrules:\n"
        "  - {name: stop, match: {host: payments.svc}, fault: {abort: {status: 503}}}\n"
        "  - {name: later, response: [{set_header: {x: y}}]}\n"
        "  - {name: edit, match: {host: api.svc}, response: [{set_header: {x: y}}]}\n"
    )
    assert main(["explain", str(rules), "https://payments.svc/pay", "--status", "200"]) == 0
    out = capsys.readouterr().out
    assert "MATCH stop" in out and "result: abort: answer 503 (rule 'stop')" in out
    assert "later  not reached: 'stop' ended the chain" in out
    assert main(["explain", str(rules), "https://api.svc/", "--status", "200"]) == 0
    out = capsys.readouterr().out
    assert "result: forward upstream" in out and "response edits: set_header x, set_header x" in out


def test_explain_upstream_request(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain", str(EXAMPLES / "rewrite.yaml"), "https://api.svc/v1/a?debug=1"]) == 0
    out = capsys.readouterr().out
    assert "upstream request: GET https://api.svc/v2/a?source=tapproxy" in out


def test_explain_needs_a_response(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain", str(EXAMPLES / "response-match.yaml"), "https://a.svc/"]) == 0
    assert "needs a response to decide: status is" in capsys.readouterr().out


def test_explain_tcp(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain", str(EXAMPLES / "tcp.yaml"), "tcp://db.internal:5432"]) == 0
    out = capsys.readouterr().out
    assert "MATCH slow-db  bandwidth, latency (downstream/upstream)" in out


def test_explain_bad_request_and_bad_rules(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["explain", str(EXAMPLES / "tcp.yaml"), "GET ftp://x"]) == 2
    bad = tmp_path / "b.yaml"
    bad.write_text("version: 3\n")
    assert main(["explain", str(bad), "GET http://x/"]) == 1


def test_parse_request() -> None:
    info = parse_request("POST http://a.svc:8080/p?q=1", ["x-a: 1", "x-b:2"], "1.2.3.4", "reverse")
    assert (info.method, info.host, info.port, info.path, info.query) == (
        "POST",
        "a.svc",
        8080,
        "/p",
        "q=1",
    )
    assert info.fields == ((b"host", b"a.svc:8080"), (b"x-a", b"1"), (b"x-b", b"2"))
    assert parse_request("https://a/", [], "", "").method == "GET"
    with pytest.raises(ValueError):
        parse_request("GET https://a/", ["no colon"], "", "")


def test_explain_percent_and_edit_steps(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rules = tmp_path / "r.yaml"
    rules.write_text(
        "version: 1\nrules:\n"
        "  - {name: maybe, match: {host: a.svc, percent: 25}, fault: {delay: {ms: 10}}}\n"
        "  - name: edit\n"
        "    match: {host: a.svc}\n"
        "    request: [{replace_body: {regex: x, with: y}}, {json_merge: {k: 1}}]\n"
        "    response: [{replace_body: {regex: '1', with: '2'}}]\n"
    )
    argv = ["explain", str(rules), "POST http://a.svc/", "--body", "xx", "--status", "200"]
    assert main([*argv, "--response-body", "v1"]) == 0
    out = capsys.readouterr().out
    assert "(acts on 25% of matching requests)" in out
    assert "result (25%: every matching percent rule acts): forward upstream" in out
    assert "result (when no percent rule acts): forward upstream; rules acting: edit" in out
    assert "    after replace_body regex 'x': yy" in out
    assert "    json_merge: not applied (body is not JSON); body stays yy" in out
    assert "    after replace_body regex '1': v2" in out
