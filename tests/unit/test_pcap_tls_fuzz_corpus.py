"""The ``tls`` fuzz corpus as a regression suite (tests/fuzz/fuzz_tls.py's checks).

Every seed and every input a campaign kept goes once through the harness's
``one_input``, without atheris; docs/fuzzing.md describes the campaigns.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fuzz import fuzz_tls
from tests.fuzz._harness import corpus_files

FILES = corpus_files(fuzz_tls.TARGET)


def test_the_corpus_has_its_seeds() -> None:
    names = {p.name for p in FILES}
    assert "seed-rfc8448.bin" in names and any(n.startswith("seed-tls12-") for n in names)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_corpus_input(path: Path) -> None:
    fuzz_tls.one_input(path.read_bytes())


def test_split_and_join_round_trip() -> None:
    chunks = [(True, b"\x16\x03\x01abc"), (False, b""), (False, b"x" * 70_000)]
    keylog, back = fuzz_tls.split(fuzz_tls.join(b"CLIENT_RANDOM a b\n", chunks))
    assert keylog == b"CLIENT_RANDOM a b\n"
    assert b"".join(d for c, d in back if not c) == b"x" * 70_000
    assert [d for c, d in back if c] == [b"\x16\x03\x01abc"]
