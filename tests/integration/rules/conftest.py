"""Fixtures of the live rule tests in this folder (test_rules_*.py).

Every test here gets a fresh view of one recording origin per module: the
``origin`` fixture starts it, and the autouse ``_fresh_origin`` forgets what
it saw and the replies set by the previous test. These stay in this folder so
that they apply only to these modules (test_rules_reload.py and
test_rules_tcp.py, one level up, run their own origins or none).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.rules_support import Origin
from tests.support.upstreams import Upstreams


@pytest.fixture(scope="module")
def origin(upstreams: Upstreams) -> Iterator[Origin]:
    o = Origin(upstreams)
    yield o
    o.close()


@pytest.fixture(autouse=True)
def _fresh_origin(origin: Origin) -> None:
    origin.reset()
