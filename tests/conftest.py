"""Shared fixtures: upstream servers and a running proxy (subprocess)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from tests.support.proxyproc import ProxyProcess, start_proxy
from tests.support.upstreams import Upstreams

# Property tests share two cores with running proxies and servers: how fast
# Hypothesis generates inputs then says nothing about the code under test.
settings.register_profile("shared-machine", suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("shared-machine")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "slow: a long run (h2load, 1 GiB transfers); -m 'not slow' leaves them out"
    )


@pytest.fixture(scope="session")
def upstreams() -> Iterator[Upstreams]:
    u = Upstreams()
    yield u
    u.close()


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyProcess]:
    """A regular-mode proxy shared by a test module, with a flow log."""
    log = tmp_path_factory.mktemp("proxy") / "flows.jsonl"
    p = start_proxy(flow_log=log)
    yield p
    p.stop()


@pytest.fixture
def fresh_proxy(tmp_path: Path) -> Iterator[ProxyProcess]:
    """A proxy of the test's own (for flow-log counts and connection counts)."""
    p = start_proxy(flow_log=tmp_path / "flows.jsonl")
    yield p
    p.stop()
