"""``tapproxy rules explain`` shows ``percent`` and each body edit's effect
(issue 14 item 7), and what it shows is what a live proxy does."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

from tests.support.proxyproc import start_proxy
from tests.support.upstreams import Upstreams

RULES = """\
version: 1
rules:
  - name: flaky
    match: {path: /echo/pay, percent: 50}
    fault: {abort: {status: 503}}
  - name: edits
    match: {path: {prefix: /echo/}}
    request:
      - {replace_body: {regex: "cat", with: "dog"}}
      - {json_merge: {"b": 2}}
"""


def explain(rules: Path, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "proxy", "rules", "explain", str(rules), *args],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_explain_shows_the_probability_and_both_outcomes(tmp_path: Path) -> None:
    rules = tmp_path / "r.yaml"
    rules.write_text(RULES)
    out = explain(rules, "POST http://api.svc/echo/pay", "--body", '{"a": "cat"}')
    assert "MATCH flaky  fault abort 503 (acts on 50% of matching requests)" in out, out
    assert "result (50%: every matching percent rule acts): abort: answer 503" in out, out
    assert "result (when no percent rule acts): forward upstream; rules acting: edits" in out


def test_explained_body_is_what_the_upstream_receives(tmp_path: Path, upstreams: Upstreams) -> None:
    rules = tmp_path / "r.yaml"
    rules.write_text(RULES)
    sample = '{"a": "cat"}'
    url = f"{upstreams.url}/echo/other"
    out = explain(rules, f"POST {url}", "--body", sample)
    assert '    after replace_body regex \'cat\': {"a": "dog"}' in out, out
    [last] = [x for x in out.splitlines() if x.startswith("    after json_merge: ")]
    explained = last.removeprefix("    after json_merge: ")
    assert json.loads(explained) == {"a": "dog", "b": 2}

    p = start_proxy("--rules", str(rules))
    try:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": p.url}))
        req = urllib.request.Request(url, data=sample.encode(), method="POST")
        req.add_header("Content-Type", "application/json")
        with opener.open(req, timeout=15) as r:
            echoed = json.loads(r.read())
    finally:
        assert p.stop() == 0
    assert echoed["body"] == explained
