"""Shared plumbing for the atheris harnesses in this folder.

Each ``fuzz_<target>.py`` defines ``one_input(data: bytes) -> None``, which
returns normally for every input the code under test handles as documented
and raises (``AssertionError`` or the unexpected exception itself) otherwise.
The same function is what libFuzzer drives (``python tests/fuzz/fuzz_X.py
CORPUS``) and what ``tests/unit/test_fuzz_regressions.py`` replays on every
corpus file, so atheris is only needed to fuzz, never to run the tests.
"""

from __future__ import annotations

import contextlib
import os
import sys
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

FUZZ_DIR = Path(__file__).resolve().parent
REPO = FUZZ_DIR.parents[1]
CORPUS_ROOT = FUZZ_DIR / "corpus"
DICT_ROOT = FUZZ_DIR / "dicts"
KNOWN_CRASHES = FUZZ_DIR / "known_crashes.txt"


@contextlib.contextmanager
def instrumented(active: bool) -> Iterator[None]:
    """Instrument the ``proxy`` package for coverage when ``active`` (fuzzing).

    Modules are instrumented when first imported, so a harness imports the
    code under test inside this block, before anything else imports it.
    Under pytest (``active`` false) this does nothing and atheris may be
    absent.
    """
    if not active:
        yield
        return
    import atheris  # type: ignore[import-untyped]

    with atheris.instrument_imports(include=["proxy"]):
        yield


def signature(exc: BaseException) -> str:
    """``Type@file:function`` of the deepest frame in ``proxy/``.

    When a harness check itself failed, its ``file:function:line`` instead.

    Stable across unrelated edits, so a finding can be listed in
    known_crashes.txt while it waits for a fix.
    """
    frames = traceback.extract_tb(exc.__traceback__)
    inside = [f for f in frames if "/proxy/" in f.filename] or frames[-1:]
    if frames and "/tests/fuzz/" in frames[-1].filename:
        inside = frames[-1:]  # a harness check failed (maybe inside a callback)
    if not inside:
        return type(exc).__name__
    f = inside[-1]
    try:
        where = Path(f.filename).resolve().relative_to(REPO).as_posix()
    except ValueError:
        where = Path(f.filename).name
    line = "" if "/proxy/" in f.filename else f":{f.lineno}"
    return f"{type(exc).__name__}@{where}:{f.name}{line}"


def known_crashes() -> frozenset[str]:
    """Signatures listed in known_crashes.txt (``#`` starts a comment)."""
    if not KNOWN_CRASHES.exists():
        return frozenset()
    lines = (ln.split("#", 1)[0].strip() for ln in KNOWN_CRASHES.read_text().splitlines())
    return frozenset(ln for ln in lines if ln)


def fuzz_main(one_input: Callable[[bytes], None]) -> None:
    """Hand ``one_input`` to libFuzzer with the command-line arguments.

    With ``FUZZ_SKIP_KNOWN=1`` (what ``python -m tests.fuzz.run`` sets), a
    crash whose signature is in known_crashes.txt is ignored, so a campaign
    keeps looking for new ones instead of stopping at a bug already reported.
    """
    import atheris

    target = one_input
    if os.environ.get("FUZZ_SKIP_KNOWN") == "1":
        known = known_crashes()

        def target(data: bytes) -> None:
            try:
                one_input(data)
            except Exception as e:
                if signature(e) not in known:
                    raise

    atheris.Setup(sys.argv, target)
    atheris.Fuzz()


def corpus_files(target: str) -> list[Path]:
    """Every file of ``tests/fuzz/corpus/<target>/`` (README excluded), sorted."""
    folder = CORPUS_ROOT / target
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("README"))
