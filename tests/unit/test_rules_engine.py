"""Evaluation semantics: order, stacking, terminals, phases, bodies, chance, map_local."""

from __future__ import annotations

import itertools
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from proxy.rules import (
    CloseConnection,
    MapRemote,
    RequestInfo,
    Respond,
    SourceText,
    load_sources,
)
from proxy.rules.engine import RuleSet


def load(
    text: str, base: Path = Path("/virtual"), rng: Callable[[], float] | None = None
) -> RuleSet:
    src = [SourceText(base / "t.yaml", textwrap.dedent(text))]
    return load_sources(src, rng=rng) if rng else load_sources(src)


def req(
    host: str = "api.svc",
    path: str = "/",
    method: str = "GET",
    fields: tuple[tuple[bytes, bytes], ...] = (),
) -> RequestInfo:
    return RequestInfo(
        "https", host, 443, method, path, "", ((b"host", host.encode()), *fields), "10.0.0.1"
    )


def cycle(*values: float) -> Callable[[], float]:
    it: Iterator[float] = itertools.cycle(values)
    return lambda: next(it)


def test_first_terminal_ends_the_chain_and_earlier_edits_apply() -> None:
    rs = load(
        """\
        version: 1
        rules:
          - {name: edit, request: [{set_header: {x-a: '1'}}]}
          - {name: remote, match: {host: api.svc}, map_remote: 'http://localhost:8080'}
          - {name: mock, respond: {status: 200}}
          - {name: late-edit, request: [{set_header: {x-b: '1'}}]}
        """
    )
    plan = rs.on_request(req())
    assert plan.matched == ("edit", "remote")
    assert isinstance(plan.terminal, MapRemote) and plan.terminal.rule == "remote"
    assert plan.apply_head().fields[-1] == (b"x-a", b"1")
    other = rs.on_request(req("web.com"))
    assert other.matched == ("edit", "mock")
    assert isinstance(other.terminal, Respond) and other.terminal.status == 200


def test_hits_record_rules_and_actions() -> None:
    rs = load(
        """\
        version: 1
        rules:
          - name: many
            request: [{set_header: {x-a: '1'}}, {remove_header: cookie}]
            response: [{set_status: 201}]
            fault: {delay: {ms: 10}}
            log: {tags: [a]}
        """
    )
    plan = rs.on_request(req())
    (hit,) = plan.hits
    assert (hit.rule, hit.source) == ("many", "/virtual/t.yaml:3")
    assert hit.actions == (
        "set_header x-a",
        "remove_header cookie",
        "fault delay 10ms±0",
        "log tags=a",
    )
    rplan = rs.on_response(plan, 200, ())
    assert rplan.hits[0].actions == ("set_status 201",)


def test_block_and_faults() -> None:
    rs = load(
        """\
        version: 1
        rules:
          - {match: {path: /close}, block: {close: true}}
          - {match: {path: /403}, block: {}}
          - {match: {path: /reset}, fault: {reset: true}}
          - {match: {path: /hang}, fault: {hang: true}}
          - {match: {path: /abort}, fault: {abort: {status: 503}}}
          - match: {path: /slow}
            fault: {delay: {ms: 100, jitter_ms: 50}, bandwidth: {bytes_per_second: 1000}}
          - match: {path: /slow}
            fault: {delay: {ms: 100}, bandwidth: {bytes_per_second: 500}, close_after: {bytes: 9}}
        """,
        rng=cycle(1.0),
    )
    assert rs.on_request(req(path="/close")).terminal == CloseConnection("close", "t.yaml:3")
    blocked = rs.on_request(req(path="/403")).terminal
    assert isinstance(blocked, Respond) and (blocked.status, blocked.kind) == (403, "block")
    assert rs.on_request(req(path="/reset")).terminal == CloseConnection("reset", "t.yaml:5")
    assert rs.on_request(req(path="/hang")).terminal == CloseConnection("hang", "t.yaml:6")
    abort = rs.on_request(req(path="/abort")).terminal
    assert isinstance(abort, Respond) and (abort.status, abort.kind) == (503, "abort")
    slow = rs.on_request(req(path="/slow"))
    assert slow.terminal is None
    assert slow.faults.delay == pytest.approx(0.25)  # 150 ms (jitter drawn at +1) + 100 ms
    assert (slow.faults.bandwidth, slow.faults.close_after) == (500, 9)


def test_percent_uses_the_injected_random_source() -> None:
    rs = load(
        "version: 1\nrules: [{match: {percent: 10}, fault: {abort: {status: 503}}}]",
        rng=cycle(0.05, 0.5),
    )
    results = [rs.on_request(req()).terminal is not None for _ in range(4)]
    assert results == [True, False, True, False]


def test_times_counts_only_matches_that_acted_and_resets_with_fresh() -> None:
    rs = load(
        "version: 1\nrules: [{match: {host: api.svc, percent: 50, times: 2}, respond: {}}]",
        rng=cycle(0.9, 0.1),  # percent fails, passes, fails, passes...
    )
    results = [rs.on_request(req()).terminal is not None for _ in range(8)]
    assert results == [False, True, False, True, False, False, False, False]
    assert rs.on_request(req("web.com")).terminal is None
    assert rs.fresh(rng=lambda: 0.0).on_request(req()).terminal is not None


def test_request_body_is_needed_only_when_a_rule_needs_it() -> None:
    rs = load(
        """\
        version: 1
        rules:
          - {match: {host: api.svc, path: /edit}, request: [{replace_body: {literal: a, with: b}}]}
          - {match: {host: api.svc, path: /mock}, respond: {}}
          - {match: {host: api.svc, path: /hdr}, request: [{set_header: {x: y}}]}
        """
    )
    assert rs.on_request(req(path="/edit")).needs_body
    assert not rs.on_request(req(path="/mock")).needs_body
    assert not rs.on_request(req(path="/hdr")).needs_body
    assert not rs.on_request(req("web.com", "/edit")).needs_body


def test_pending_body_rule_resumes_in_order() -> None:
    rs = load(
        """\
        version: 1
        rules:
          - {name: before, request: [{set_header: {x-a: '1'}}]}
          - {name: by-body, match: {body: {contains: secret}}, block: {}}
          - {name: after, request: [{set_header: {x-b: '1'}}]}
        """
    )
    plan = rs.on_request(req(method="POST"))
    assert plan.pending and plan.needs_body and plan.matched == ("before",)
    blocked = rs.complete_request(plan, b"a secret")
    assert blocked.matched == ("before", "by-body") and blocked.terminal is not None
    passed = rs.complete_request(plan, b"nothing")
    assert passed.matched == ("before", "after") and passed.terminal is None
    too_big = rs.complete_request(plan, None)
    assert too_big.matched == ("before", "after")
    assert "over --max-body" in too_big.warnings[0]
    assert rs.complete_request(passed, b"x") is passed  # not pending: unchanged


def test_gzip_request_body_is_decoded_for_matching() -> None:
    import gzip

    rs = load("version: 1\nrules: [{match: {body: {json: {/a: 1}}}, log: {tags: x}}]")
    plan = rs.on_request(req(method="POST", fields=((b"Content-Encoding", b"gzip"),)))
    assert rs.complete_request(plan, gzip.compress(b'{"a":1}')).matched == ("t.yaml:2",)
    broken = rs.complete_request(plan, b"not gzip")
    assert broken.matched == () and "not decoded" in broken.warnings[0]


def test_over_max_body_with_body_edits_records_a_warning() -> None:
    rs = load(
        """\
        version: 1
        rules:
          - {match: {body: {contains: x}}, log: {tags: t}}
          - request: [{replace_body: {literal: a, with: b}}]
        """
    )
    plan = rs.complete_request(rs.on_request(req(method="POST")), None)
    assert "request body edits skipped (over --max-body)" in plan.warnings


def test_response_phase_rules_and_percent_once_per_exchange() -> None:
    draws: list[int] = []

    def rng() -> float:
        draws.append(1)
        return 0.0

    rs = load(
        """\
        version: 1
        rules:
          - name: errors
            match: {host: api.svc, status: '5xx', percent: 50}
            log: {tags: [error], detail: full}
          - name: hdr
            match: {host: api.svc}
            response: [{set_header: {x-seen: '1'}}]
            log: {tags: [seen]}
          - name: fix
            match: {status: 503}
            response: [{set_status: 502}]
            fault: {delay: {ms: 5}}
        """,
        rng=rng,
    )
    plan = rs.on_request(req())
    assert plan.matched == ("hdr",) and draws == []
    rplan = rs.on_response(plan, 503, ())
    assert rplan.matched == ("errors", "hdr", "fix")
    assert draws == [1]
    assert rplan.log.tags == ("seen", "error") and rplan.log.detail == "full"  # whole exchange
    assert rplan.faults.delay == pytest.approx(0.005)
    assert rplan.apply_head(503, ()).status == 502
    ok = rs.on_response(rs.on_request(req()), 200, ())
    assert ok.matched == ("hdr",)


def test_response_body_rule_is_pending_until_the_body() -> None:
    rs = load(
        """\
        version: 1
        rules:
          - match: {response_body: {json: {/beta: true}}}
            response: [{json_patch: [{op: replace, path: /beta, value: false}]}]
        """
    )
    rplan = rs.on_response(rs.on_request(req()), 200, ())
    assert rplan.pending and rplan.needs_body
    done = rs.complete_response(rplan, b'{"beta":true}')
    assert done.apply_body(b'{"beta":true}', ()).body == b'{"beta":false}'
    assert rs.complete_response(rplan, b'{"beta":false}').matched == ()


def test_no_rules_and_no_match_share_one_empty_decision() -> None:
    empty = load("version: 1\n")
    assert empty.on_request(req()).decision is empty.nothing
    rs = load("version: 1\nrules: [{match: {host: other}, log: {}}]")
    plan = rs.on_request(req())
    assert plan.decision is rs.nothing and plan.apply_head().url == "https://api.svc/"
    assert rs.on_response(plan, 200, ()) is rs.no_response


# -- map_local -----------------------------------------------------------------


@pytest.fixture
def site(tmp_path: Path) -> Path:
    (tmp_path / "site" / "css").mkdir(parents=True)
    (tmp_path / "site" / "index.html").write_text("<html>")
    (tmp_path / "site" / "css" / "app.css").write_text("body{}")
    (tmp_path / "secret.txt").write_text("no")
    (tmp_path / "site" / "link").symlink_to(tmp_path / "secret.txt")
    return tmp_path


MAP_LOCAL = """\
version: 1
rules:
  - {match: {path: {prefix: /static/}}, map_local: {dir: site, strip_prefix: /static}}
  - {match: {path: {prefix: /up/}}, map_local: {dir: site, strip_prefix: /up, missing: upstream}}
  - {match: {path: /one}, map_local: {file: site/index.html, headers: {x-from: disk}}}
"""


@pytest.mark.parametrize(
    ("path", "status", "file", "ctype"),
    [
        ("/static/", 200, "site/index.html", b"text/html"),
        ("/static/css/app.css", 200, "site/css/app.css", b"text/css"),
        ("/static/css/", 404, None, b"text/plain; charset=utf-8"),
        ("/static/css", 404, None, b"text/plain; charset=utf-8"),
        ("/static/nope.js", 404, None, b"text/plain; charset=utf-8"),
        ("/static/..%2Fsecret.txt", 403, None, b"text/plain; charset=utf-8"),
        ("/static/css/%2e%2e%2F%2E%2E%2fsecret.txt", 403, None, b"text/plain; charset=utf-8"),
        ("/static/..\\secret.txt", 403, None, b"text/plain; charset=utf-8"),
        ("/static/link", 403, None, b"text/plain; charset=utf-8"),
        ("/static/a%00b", 403, None, b"text/plain; charset=utf-8"),
        ("/one", 200, "site/index.html", b"text/html"),
    ],
)
def test_map_local(site: Path, path: str, status: int, file: str | None, ctype: bytes) -> None:
    rs = load(MAP_LOCAL, base=site)
    t = rs.on_request(req(path=path)).terminal
    assert isinstance(t, Respond) and t.kind == "map_local"
    assert (t.status, t.file) == (status, (site / file).resolve() if file else None)
    assert t.fields[0] == (b"content-type", ctype)


def test_map_local_missing_goes_upstream(site: Path) -> None:
    rs = load(MAP_LOCAL, base=site)
    plan = rs.on_request(req(path="/up/missing.js"))
    assert plan.terminal is None and "going upstream" in plan.warnings[0]
    refused = rs.on_request(req(path="/up/..%2fsecret.txt")).terminal
    assert isinstance(refused, Respond) and refused.status == 403  # refusal beats "upstream"


def test_dot_segments_are_removed_before_matching(site: Path) -> None:
    rs = load(MAP_LOCAL, base=site)
    assert rs.on_request(req(path="/static/../secret.txt")).terminal is None  # path is /secret.txt
    everything = load("version: 1\nrules: [{map_local: {dir: site}}]", base=site)
    t = everything.on_request(req(path="/../secret.txt")).terminal
    assert isinstance(t, Respond) and t.status == 403


def test_response_map_local_serves_instead(site: Path) -> None:
    rs = load(
        "version: 1\nrules: [{match: {status: 5xx}, response: [{map_local: {file: site/index.html}}]}]",  # noqa: E501
        base=site,
    )
    rplan = rs.on_response(rs.on_request(req()), 502, ())
    assert (
        isinstance(rplan.terminal, Respond)
        and rplan.terminal.file == (site / "site/index.html").resolve()
    )
    assert not rplan.needs_body


def test_response_plan_log_covers_the_exchange() -> None:
    rs = load("version: 1\nrules: [{match: {host: api.svc}, log: {tags: [a], detail: headers}}]")
    rplan = rs.on_response(rs.on_request(req()), 200, ())
    assert rplan.log.tags == ("a",) and rplan.log.detail == "headers" and rplan.matched == ()


def test_map_local_odd_paths_do_not_crash(site: Path) -> None:
    rs = load(MAP_LOCAL, base=site)
    (site / "site" / "loop").symlink_to(site / "site" / "loop")
    for path in ["/static/" + "a" * 5000, "/static/loop", "/static/loop/x", "/static/%ff%fe"]:
        t = rs.on_request(req(path=path)).terminal
        assert isinstance(t, Respond) and t.status in (403, 404)
