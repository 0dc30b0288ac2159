"""The fuzz corpora as a regression suite, and the fuzzers' findings.

Every file of every target's corpus (tests/fuzz/corpus/<target>/) goes once
through that target's per-input check (``tests/fuzz/fuzz_<target>.py``'s
``one_input``, the function libFuzzer drives), with no atheris needed: a
corpus input that once passed keeps passing. docs/fuzzing.md has the rest.

Each finding has its minimised input saved as ``regression-*.bin`` in the
target's corpus and a test below calling the documented API directly. Both
are ``xfail(strict=True)`` while the bug is open: once proxy/ is fixed they
XPASS and fail, and the mark (here and in ``OPEN``) and the signature line
in tests/fuzz/known_crashes.txt should be removed, leaving a plain
regression test, as for the findings fixed in 7379a10.
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from proxy.pcap.analyze import analyze
from proxy.pcap.reader import CaptureError
from proxy.rules import RulesError, RuleSet, SourceText, load_sources
from tests.fuzz import fuzz_clienthello, fuzz_grpc, fuzz_http1, fuzz_pcap, fuzz_rules
from tests.fuzz._harness import CORPUS_ROOT, corpus_files

HARNESSES: dict[str, ModuleType] = {
    m.TARGET: m for m in (fuzz_http1, fuzz_rules, fuzz_clienthello, fuzz_pcap, fuzz_grpc)
}

# Open findings: corpus file -> (the exception it raises today, the bug).
# Found by fuzz_rules; proxy/rules/parse_terminals.py:local_path checks a
# path with Path.resolve() / is_file() / is_dir() outside any try.
NAME_TOO_LONG = (
    "proxy/rules/parse_terminals.py local_path: Path.is_file()/is_dir() raise OSError "
    "ENAMETOOLONG for a path component over 255 bytes (respond.file, map_local.dir)"
)
NUL_IN_PATH = (
    "proxy/rules/parse_terminals.py local_path: Path.resolve() raises ValueError "
    "('embedded null byte') for a path with a NUL (respond.file, map_local.file/dir)"
)
OPEN: dict[str, tuple[type[BaseException], str]] = {}


def open_bug(raises: type[BaseException], reason: str) -> pytest.MarkDecorator:
    """Expected to fail, with exactly this exception, until proxy/ is fixed."""
    return pytest.mark.xfail(strict=True, raises=raises, reason=reason)


def _cases() -> list[Any]:
    cases: list[Any] = []
    for target in HARNESSES:
        for path in corpus_files(target):
            key = f"{target}/{path.name}"
            marks = [open_bug(*OPEN[key])] if key in OPEN else []
            cases.append(pytest.param(target, path, id=key, marks=marks))
    return cases


@pytest.mark.parametrize(("target", "path"), _cases())
def test_corpus_input(target: str, path: Path) -> None:
    HARNESSES[target].one_input(path.read_bytes())


def test_every_target_has_seeds_and_every_open_finding_its_input() -> None:
    for target in HARNESSES:
        seeds = [p for p in corpus_files(target) if not p.name.startswith("regression-")]
        assert len(seeds) >= 5, f"{target}: too few seeds"
    for key in OPEN:
        assert (CORPUS_ROOT / key).is_file(), key


# -- the findings, through the documented API ------------------------------------------


def load(text: str, folder: Path = Path("/nonexistent")) -> RuleSet:
    return load_sources([SourceText(folder / "rules.yaml", text)])


# Fixed in 7379a10 (found by fuzz_rules: KeyError from parse_tcp._factory).
@pytest.mark.parametrize("value", ["0", "-4", "x", "1.5"])
def test_tcp_slicer_with_invalid_average_size_is_a_rules_error(value: str) -> None:
    with pytest.raises(RulesError, match="average_size"):
        load(f"version: 1\ntcp: [{{slicer: {{average_size: {value}}}}}]\n")


# Fixed in 7379a10 (found by fuzz_rules: ValueError "Invalid IPv6 URL" from urlsplit).
@pytest.mark.parametrize("url", ["http://a]", "http://[a", "http://[::1", "https://x]:8443/p"])
def test_map_remote_with_unbalanced_bracket_is_a_rules_error(url: str) -> None:
    for rule in (f'{{map_remote: "{url}"}}', f'{{map_remote: {{to: "{url}"}}}}'):
        with pytest.raises(RulesError, match="map_remote"):
            load(f"version: 1\nrules: [{rule}]\n")


# Fixed in 7379a10 (found by fuzz_rules: re.error from re.compile(text.encode())):
# a regex valid as text but not for bytes, wherever one is compiled for bytes.
STR_ONLY_ESCAPES = ["\\u0041", "\\U00000041", "\\N{DIGIT ONE}"]


@pytest.mark.parametrize("regex", STR_ONLY_ESCAPES)
@pytest.mark.parametrize(
    ("where", "rule"),
    [
        ("replace_body", "rules: [{response: [{replace_body: {regex: 'R', with: b}}]}]"),
        ("tcp[0].replace", "tcp: [{replace: {regex: 'R', with: b}}]"),
        ("body.regex", "rules: [{match: {body: {regex: 'R'}}, log: {}}]"),
    ],
)
def test_regex_valid_only_as_text_is_a_rules_error(where: str, rule: str, regex: str) -> None:
    with pytest.raises(RulesError, match=re.escape(where)):
        load("version: 1\n" + rule.replace("R", regex) + "\n")


@pytest.mark.parametrize("key", ["respond: {file", "map_local: {dir"])
def test_local_path_with_a_too_long_name_is_a_rules_error(key: str, tmp_path: Path) -> None:
    # The rules file's folder must exist: under a missing one stat() says ENOENT.
    with pytest.raises(RulesError, match="a" * 256):
        load("version: 1\nrules: [{" + key + ": " + "a" * 256 + "}}]\n", tmp_path)


@pytest.mark.parametrize("key", ["respond: {file", "map_local: {dir", "map_local: {file"])
def test_local_path_with_a_nul_is_a_rules_error(key: str) -> None:
    with pytest.raises(RulesError):
        load("version: 1\nrules: [{" + key + ': "a\\0"}}]\n')


# Fixed in 7379a10 (found by fuzz_pcap: KeyError from Reassembler._close).
def test_pcap_segment_to_its_own_address_and_port_is_analyzed() -> None:
    # libpcap, raw IPv4 link type: one SYN 10.0.0.1:80 -> 10.0.0.1:80 (a TCP
    # self-connect, which Linux does produce on loopback, or a LAND packet).
    capture = (CORPUS_ROOT / "pcap" / "regression-self-connection.bin").read_bytes()
    records: list[object] = []
    try:
        analyze(io.BytesIO(capture), records.append)
    except CaptureError:  # pragma: no cover - the file is well-formed
        pytest.fail("a well-formed capture was refused")
    assert len(records) <= 1
