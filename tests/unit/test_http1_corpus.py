"""The fuzz seed corpus (tests/fuzz/corpus/http1) is complete and well-behaved.

Every seed, fed whole or one byte at a time to either parser, yields events
or a ProtocolError and nothing else; each hazard row has exactly one seed;
the valid seeds parse without error.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from proxy.http1 import EndOfMessage, ProtocolError, RequestParser, ResponseParser
from tests.unit.test_http1_parser import bytewise, parse

CORPUS = Path(__file__).resolve().parents[1] / "fuzz" / "corpus" / "http1"
SEEDS = sorted(CORPUS.glob("*.bin"))
HAZARD_ROWS = 31


def test_every_hazard_row_has_one_seed() -> None:
    rows = [
        int(m.group(1)) for p in SEEDS if (m := re.fullmatch(r"row-(\d\d)-[a-z0-9-]+\.bin", p.name))
    ]
    assert sorted(rows) == list(range(1, HAZARD_ROWS + 1))
    names = {p.name for p in SEEDS}
    assert all(n.startswith(("row-", "valid-")) for n in names), names


@pytest.mark.parametrize("path", SEEDS, ids=[p.stem for p in SEEDS])
@pytest.mark.parametrize("side", ["request", "response"])
def test_seed_parses_or_raises_protocol_error(path: Path, side: str) -> None:
    raw = path.read_bytes()
    response_to = [b"GET", b"HEAD", b"GET"] if side == "response" else None
    for pieces in ([raw], bytewise(raw)):
        # parse() lets any exception other than ProtocolError through.
        _, status = parse(pieces, response_to=response_to, eof=True)
        assert status is None or status in (400, 414, 431, 501, 502, 505)


@pytest.mark.parametrize(
    "path", [p for p in SEEDS if p.name.startswith("valid-")], ids=lambda p: p.stem
)
def test_valid_seed_is_accepted(path: Path) -> None:
    raw = path.read_bytes()
    parser: RequestParser | ResponseParser
    if raw.startswith(b"HTTP/"):
        parser = ResponseParser()
        parser.expect(b"GET")
    else:
        parser = RequestParser()
    parser.feed(raw)
    parser.feed_eof()
    ends = 0
    try:
        while (event := parser.next_event()) is not None:
            ends += isinstance(event, EndOfMessage)
    except ProtocolError as e:  # pragma: no cover - the assertion message
        pytest.fail(f"{path.name}: {e!r}")
    assert ends >= 1 and parser.buffered == 0
