"""Interception decisions and the bounded memories beside them (pure, no IO)."""

from __future__ import annotations

import pytest

from proxy.tls.policy import InterceptPolicy, PassthroughMemory, UpstreamNames


@pytest.mark.parametrize(
    ("mitm_all", "mitm_hosts", "ignore", "host", "port", "expected"),
    [
        (True, [], [], "example.com", 443, True),
        (False, [], [], "example.com", 443, False),
        (False, [r"\.example\.com:443$"], [], "api.example.com", 443, True),
        (False, [r"\.example\.com:443$"], [], "api.example.com", 8443, False),
        (True, [r"^bank\."], [r"^bank\."], "bank.test", 443, False),  # ignore wins
        (True, [], [r"(?i)^PINNED\.test:"], "pinned.TEST", 443, False),
        (True, [], ["^other"], "pinned.test", 443, True),
    ],
)
def test_intercept_decisions(
    mitm_all: bool, mitm_hosts: list[str], ignore: list[str], host: str, port: int, expected: bool
) -> None:
    policy = InterceptPolicy.build(mitm_all, mitm_hosts, ignore)
    assert policy.intercept(host, port) is expected


def test_passthrough_memory_is_case_insensitive_and_bounded() -> None:
    memory = PassthroughMemory(limit=2)
    memory.add("A.test", 443)
    assert ("a.TEST", 443) in memory and ("a.test", 8443) not in memory
    memory.add("b.test", 443)
    memory.add("c.test", 443)
    assert ("a.test", 443) not in memory and ("c.test", 443) in memory


def test_upstream_names_expire_and_stay_bounded() -> None:
    names = UpstreamNames(limit=2, ttl=10.0)
    names.remember(("h", 443, "a"), ["*.h", "1.2.3.4"], "Org", now=100.0)
    assert names.get(("h", 443, "a"), now=105.0) == (("*.h", "1.2.3.4"), "Org")
    assert names.get(("h", 443, "a"), now=110.0) is None  # expired, and dropped
    assert names.get(("h", 443, "a"), now=100.0) is None
    for i in range(3):
        names.remember(("h", 443, str(i)), [], None, now=100.0)
    assert names.get(("h", 443, "0"), now=101.0) is None  # least recently learnt, evicted
    assert names.get(("h", 443, "2"), now=101.0) == ((), None)
