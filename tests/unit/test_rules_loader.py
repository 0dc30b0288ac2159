"""Loader: shapes, positions and wording of errors, file and folder handling."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from proxy.rules import RulesError, SourceText, load_rules, load_sources
from proxy.rules.engine import RuleSet


def load(text: str, name: str = "t.yaml", base: Path = Path("/virtual")) -> RuleSet:
    return load_sources([SourceText(base / name, textwrap.dedent(text))])


def errors(text: str) -> list[str]:
    with pytest.raises(RulesError) as info:
        load(text)
    return [str(e) for e in info.value.errors]


def test_brief_example_error_format() -> None:
    text = """\
    version: 1
    rules:
      - name: a
        respond: {status: 200}
      - name: b
        respond: {status: 200}
      - match:
          path: {prefx: /v1}
        respond: {status: 200}
    """
    assert errors(text) == [
        "/virtual/t.yaml:8:14: rules[2].match.path: unknown matcher 'prefx' "
        "(did you mean 'prefix'?); expected one of exact, prefix, glob, regex"
    ]


@pytest.mark.parametrize(
    ("snippet", "expected"),
    [
        ("rules: []", "1:1: missing required key 'version'"),
        ("version: 2", "1:10: version: unsupported version 2; expected 1"),
        ("version: 1\nrule: []", "2:1: unknown key 'rule' (did you mean 'rules'?)"),
        ("version: 1\nrules: {}", "2:8: rules: expected a list of rules"),
        (
            "version: 1\nrules: [{matchh: {}, log: {tags: x}}]",
            "unknown key 'matchh' (did you mean 'match'?)",
        ),
        (
            "version: 1\nrules: [{log: {tags: x}, log: {tags: y}}]",
            "duplicate key 'log' (first at line 2)",
        ),
        ("version: 1\nrules: [{match: {host: x}}]", "the rule does nothing"),
        (
            "version: 1\nrules: [{match: {method: get}, log: {}}]",
            "methods are case-sensitive; did you mean 'GET'?",
        ),
        ("version: 1\nrules: [{match: {method: 'G T'}, log: {}}]", "'G T' is not a method token"),
        (
            "version: 1\nrules: [{match: {host: {regex: '[a'}}, log: {}}]",
            "2:32: rules[0].match.host.regex: invalid regex",
        ),
        (
            "version: 1\nrules: [{match: {port: 70000}, log: {}}]",
            "expected an integer between 1 and 65535",
        ),
        (
            "version: 1\nrules: [{match: {status: 6xx}, log: {}}]",
            "expected a number, 'Nxx' or 'A-B'",
        ),
        (
            "version: 1\nrules: [{match: {status: 500-400}, log: {}}]",
            "expected a number, 'Nxx' or 'A-B'",
        ),
        (
            "version: 1\nrules: [{match: {percent: 101}, log: {}}]",
            "expected a number between 0 and 100",
        ),
        ("version: 1\nrules: [{match: {times: 0}, log: {}}]", "expected an integer at least 1"),
        (
            "version: 1\nrules: [{match: {not: {times: 1}}, log: {}}]",
            "'times' is only allowed at the top level",
        ),
        (
            "version: 1\nrules: [{match: {any: []}, log: {}}]",
            "expected a non-empty list of match mappings",
        ),
        ("version: 1\nrules: [{match: {client: 10.0.0.0/33}, log: {}}]", "invalid network"),
        (
            "version: 1\nrules: [{match: {headers: {x: {equals: a}}}, log: {}}]",
            "(did you mean 'exact'?)",
        ),
        (
            "version: 1\nrules: [{match: {headers: {x: {present: true, exact: a}}}, log: {}}]",
            "write 'present: true' alone",
        ),
        (
            "version: 1\nrules: [{match: {body: {json: {a/b: 1}}}, log: {}}]",
            "must be empty or start with '/'",
        ),
        ('version: 1\nrules: [{request: [{set_header: {x: "a\\nb"}}]}]', "unsafe header"),
        ("version: 1\nrules: [{request: [{set_header: {'bad name': a}}]}]", "invalid field name"),
        (
            "version: 1\nrules: [{request: [{set_header: {content-length: '5'}}]}]",
            "computed by the proxy",
        ),
        (
            "version: 1\nrules: [{request: [{remove_header: Transfer-Encoding}]}]",
            "computed by the proxy",
        ),
        (
            "version: 1\nrules: [{request: [{set_header: {x: a}, add_header: {y: b}}]}]",
            "one action per list item",
        ),
        ("version: 1\nrules: [{request: [{set_status: 200}]}]", "unknown action 'set_status'"),
        (
            "version: 1\nrules: [{request: [{rewrite_path: {regex: '(a)', with: '\\2'}}]}]",
            "refers to group 2",
        ),
        (
            "version: 1\nrules: [{request: [{rewrite_path: {regex: '(a)', with: '\\g<x>'}}]}]",
            "unknown group 'x'",
        ),
        ("version: 1\nrules: [{request: [{rewrite_url: {regex: a, with: '\\q'}}]}]", "bad escape"),
        (
            "version: 1\nrules: [{request: [{replace_body: {regex: a, literal: b, with: c}}]}]",
            "exactly one of regex, literal",
        ),
        (
            "version: 1\nrules: [{request: [{json_patch: [{op: move, path: /a}]}]}]",
            "'move' needs 'from'",
        ),
        (
            "version: 1\nrules: [{request: [{json_patch: [{op: frob, path: /a}]}]}]",
            "unknown op 'frob'",
        ),
        (
            "version: 1\nrules: [{request: [{json_patch: [{op: add, path: a, value: 1}]}]}]",
            "must be empty or start with '/'",
        ),
        ("version: 1\nrules: [{request: [{json_merge: .nan}]}]", "NaN and infinity"),
        ("version: 1\nrules: [{respond: {status: 99}}]", "expected an integer between 200 and 599"),
        ("version: 1\nrules: [{respond: {body: a, json: {}}}]", "use only one of body, file, json"),
        ("version: 1\nrules: [{respond: {file: nope.json}}]", "file not found"),
        (
            "version: 1\nrules: [{respond: {}, block: {}}]",
            "at most one of respond, map_local, map_remote, block",
        ),
        ("version: 1\nrules: [{map_remote: 'ftp://x'}]", "expected an http(s) URL"),
        ("version: 1\nrules: [{map_local: {}}]", "expected exactly one of file, dir"),
        ("version: 1\nrules: [{map_local: {dir: nowhere}}]", "folder not found"),
        ("version: 1\nrules: [{map_local: {file: a, missing: maybe}}]", "expected 404 or upstream"),
        ("version: 1\nrules: [{block: {close: true, status: 403}}]", "write 'close: true' alone"),
        (
            "version: 1\nrules: [{fault: {abort: {status: 503}, hang: true}}]",
            "use only one of abort, reset, hang",
        ),
        ("version: 1\nrules: [{fault: {delay: {ms: -5}}}]", "expected a number at least 0"),
        (
            "version: 1\nrules: [{fault: {bandwidth: {bytes_per_second: 0}}}]",
            "expected an integer at least 1",
        ),
        ("version: 1\nrules: [{fault: {phase: later}}]", "expected request or response"),
        (
            "version: 1\nrules: [{match: {status: 500}, respond: {}}]",
            "'respond' cannot depend on response matchers",
        ),
        (
            "version: 1\nrules: [{match: {status: 500}, request: [{set_method: GET}]}]",
            "'request' cannot depend",
        ),
        (
            "version: 1\nrules: [{match: {status: 500}, fault: {phase: request, reset: true}}]",
            "request-phase fault",
        ),
        (
            "version: 1\nrules: [{respond: {}, request: [{set_method: GET}]}]",
            "request edits have no effect",
        ),
        (
            "version: 1\nrules: [{respond: {}, fault: {reset: true}}]",
            "cannot both answer and abort",
        ),
        (
            "version: 1\nrules: [{log: {detail: everything}}]",
            "expected one of summary, headers, full",
        ),
        ("version: 1\nrules: [{name: a, log: {}}, {name: a, log: {}}]", "duplicate rule name 'a'"),
        ("version: 1\ntcp: [{match: {port: 1}}]", "needs at least one of replace"),
        ("version: 1\ntcp: [{latency: {jitter_ms: 1}}]", "missing required key 'ms'"),
        (
            "version: 1\ntcp: [{match: {direction: sideways}, latency: {ms: 1}}]",
            "expected one of upstream, downstream, both",
        ),
        (
            "version: 1\ntcp: [{slicer: {average_size: 4, size_variation: 4}}]",
            "size_variation must be smaller",
        ),
        ("version: 1\ntcp: [{replace: {regex: '(', with: x}}]", "invalid regex"),
        ("version: 1\ntcp: [{limit_data: {bytes: 1.5}}]", "expected an integer"),
        ("version: 1\nrules: [{log: {}}]\n  bad: indent", "YAML syntax"),
        ("version: 1\n---\nversion: 1", "YAML syntax"),
        ("", "empty file"),
        ("- a\n- b", "expected a mapping with 'version: 1'"),
    ],
)
def test_errors(snippet: str, expected: str) -> None:
    found = errors(snippet)
    assert any(expected in e for e in found), found
    assert all(e.startswith("/virtual/t.yaml:") for e in found)


def test_errors_are_collected_and_sorted() -> None:
    found = errors(
        """\
        version: 1
        rules:
          - match: {method: get}
            log: {}
          - match: {port: 0}
            log: {}
        tcp:
          - latency: {ms: -1}
        """
    )
    assert [e.split(":")[1] for e in found] == ["3", "5", "8"]


def test_header_values_read_as_written() -> None:
    rs = load("version: 1\nrules: [{request: [{set_header: {x-a: 1, x-b: yes, x-c: 1.50}}]}]")
    actions = rs.rules[0].request
    assert [(a.name, a.value) for a in actions] == [  # type: ignore[attr-defined]
        (b"x-a", b"1"),
        (b"x-b", b"yes"),
        (b"x-c", b"1.50"),
    ]


def test_empty_rules_and_default_names(tmp_path: Path) -> None:
    assert len(load("version: 1\nrules:\ntcp:\n")) == 0
    rs = load("version: 1\nrules:\n  - log: {tags: a}\n")
    assert rs.rules[0].name == "t.yaml:3"


def test_alias_bomb_is_an_error_not_a_hang() -> None:
    lines = ["version: 1", "a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}]" for i in range(1, 12)]
    lines.append("rules: [{request: [{json_merge: *a11}]}]")
    found = errors("\n".join(lines))
    assert any("nested too deeply or too large" in e for e in found)


def test_recursive_alias_is_an_error() -> None:
    found = errors("version: 1\nrules: [{request: [{json_merge: &a {x: *a}}]}]")
    assert any("nested too deeply" in e for e in found)


def test_folder_loads_sorted_yaml_files(tmp_path: Path) -> None:
    (tmp_path / "b.yaml").write_text("version: 1\nrules: [{name: second, log: {}}]\n")
    (tmp_path / "a.yaml").write_text("version: 1\nrules: [{name: first, log: {}}]\n")
    (tmp_path / "notes.txt").write_text("not rules")
    rs = load_rules([tmp_path])
    assert [r.name for r in rs.rules] == ["first", "second"]
    assert [p.name for p in rs.files] == ["a.yaml", "b.yaml"]


def test_unreadable_and_non_utf8(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"version: 1\n\xff\xfe")
    with pytest.raises(RulesError) as info:
        load_rules([bad, tmp_path / "missing.yaml"])
    assert len(info.value.errors) == 2
    assert all("cannot read" in str(e) for e in info.value.errors)


def test_relative_files_resolve_against_the_rules_file(tmp_path: Path) -> None:
    (tmp_path / "mocks").mkdir()
    (tmp_path / "mocks" / "a.json").write_text("{}")
    rules = tmp_path / "dev.yaml"
    rules.write_text("version: 1\nrules: [{respond: {file: mocks/a.json}}]\n")
    rs = load_rules([rules])
    assert rs.rules[0].terminal.file == (tmp_path / "mocks" / "a.json").resolve()  # type: ignore[union-attr]
