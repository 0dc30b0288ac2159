"""Hot reload decisions: reload on change, keep the last good rules on error."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from proxy.rules import RequestInfo, RulesError, RulesWatcher

GOOD = "version: 1\nrules: [{name: a, match: {times: 1}, respond: {}}]\n"
INFO = RequestInfo("http", "x", 80, "GET", "/", "")


def bump(path: Path, text: str) -> None:
    """Write and move the mtime forward (coarse file system clocks)."""
    path.write_text(text)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


def test_start_raises_on_bad_rules(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text("version: 7\n")
    with pytest.raises(RulesError):
        RulesWatcher([tmp_path / "r.yaml"])


def test_unchanged_files_keep_the_rule_set_and_its_counters(tmp_path: Path) -> None:
    f = tmp_path / "r.yaml"
    f.write_text(GOOD)
    w = RulesWatcher([f])
    first = w.current
    assert first.on_request(INFO).terminal is not None  # times: 1 used up
    assert w.poll().changed is False
    bump(f, GOOD)  # touched, same content
    result = w.poll()
    assert (result.changed, result.error, result.ruleset) == (False, None, first)
    assert w.current.on_request(INFO).terminal is None


def test_change_reloads_and_error_keeps_last_good(tmp_path: Path) -> None:
    f = tmp_path / "r.yaml"
    f.write_text(GOOD)
    w = RulesWatcher([f])
    good = w.current
    bump(f, "version: 1\nrules: [{name: a, match: {method: get}, log: {}}]\n")
    broken = w.poll()
    assert broken.ruleset is good and not broken.changed
    assert broken.error is not None and "case-sensitive" in str(broken.error)
    assert w.poll().error is None  # reported once per change
    bump(f, "version: 1\nrules: [{name: b, log: {}}]\n")
    fixed = w.poll()
    assert fixed.changed and fixed.ruleset is w.current and w.current.rules[0].name == "b"


def test_new_and_removed_files_in_a_folder(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(GOOD)
    w = RulesWatcher([tmp_path])
    (tmp_path / "b.yaml").write_text("version: 1\nrules: [{name: b, log: {}}]\n")
    result = w.poll()
    assert result.changed and [r.name for r in result.ruleset.rules] == ["a", "b"]
    (tmp_path / "a.yaml").unlink()
    assert [r.name for r in w.poll().ruleset.rules] == ["b"]


def test_deleted_file_is_an_error(tmp_path: Path) -> None:
    f = tmp_path / "r.yaml"
    f.write_text(GOOD)
    w = RulesWatcher([f])
    f.unlink()
    result = w.poll()
    assert result.error is not None and result.ruleset is w.current


def test_injected_stat_decides_when_to_read(tmp_path: Path) -> None:
    f = tmp_path / "r.yaml"
    f.write_text(GOOD)
    stamps = {f: (1, 1)}
    w = RulesWatcher([f], stat=lambda p: stamps[p])
    f.write_text("version: 1\nrules: [{name: c, log: {}}]\n")
    assert not w.poll().changed  # same stamp: not even read
    stamps[f] = (2, 1)
    assert w.poll().changed
