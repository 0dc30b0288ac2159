"""Which connections to intercept (pure decisions, no IO).

Hosts are matched as ``host:port`` with ``re.search``, case-insensitively,
like mitmproxy's ``ignore_hosts``/``allow_hosts``: first at CONNECT (the
target) and again at the ClientHello (its SNI). ``--ignore-hosts`` always
wins; ``--mitm`` intercepts everything else; ``--mitm-hosts`` only those.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class InterceptPolicy:
    mitm_all: bool = False
    mitm_hosts: tuple[re.Pattern[str], ...] = ()
    ignore_hosts: tuple[re.Pattern[str], ...] = ()
    auto_passthrough: bool = False

    @classmethod
    def build(
        cls,
        mitm_all: bool,
        mitm_hosts: Sequence[str],
        ignore_hosts: Sequence[str],
        auto_passthrough: bool = False,
    ) -> InterceptPolicy:
        """Compile the patterns; ``re.error`` names the bad one."""
        return cls(
            mitm_all,
            tuple(re.compile(p, re.IGNORECASE) for p in mitm_hosts),
            tuple(re.compile(p, re.IGNORECASE) for p in ignore_hosts),
            auto_passthrough,
        )

    @property
    def enabled(self) -> bool:
        return self.mitm_all or bool(self.mitm_hosts)

    def intercept(self, host: str, port: int) -> bool:
        address = f"{host}:{port}"
        if any(p.search(address) for p in self.ignore_hosts):
            return False
        return self.mitm_all or any(p.search(address) for p in self.mitm_hosts)


class PassthroughMemory:
    """Hosts whose clients refused our certificate (likely pinning), bounded LRU."""

    def __init__(self, limit: int = 10_000) -> None:
        self.limit = limit
        self._hosts: OrderedDict[tuple[str, int], None] = OrderedDict()

    def add(self, host: str, port: int) -> None:
        self._hosts[(host.lower(), port)] = None
        self._hosts.move_to_end((host.lower(), port))
        while len(self._hosts) > self.limit:
            self._hosts.popitem(last=False)

    def __contains__(self, key: tuple[str, int]) -> bool:
        return (key[0].lower(), key[1]) in self._hosts


#: An upstream certificate's names for our leaf: (extra SANs, organization).
CertNames = tuple[tuple[str, ...], str | None]


class UpstreamNames:
    """The names in each upstream's certificate, learnt by probing it: bounded LRU.

    The first interception of ``(host, port, sni)`` connects upstream before
    the client's handshake to copy its certificate's names into our leaf.
    Later connections reuse what was learnt, so they need no probe and their
    request can take a pooled upstream connection (which was verified when it
    was opened; a failure there is the same 502/504 as a failed probe). An
    entry is trusted for ``ttl`` seconds, so a changed certificate is seen.
    """

    def __init__(self, limit: int = 10_000, ttl: float = 600.0) -> None:
        self.limit = limit
        self.ttl = ttl
        self._names: OrderedDict[tuple[str, int, str], tuple[float, CertNames]] = OrderedDict()

    def remember(
        self, key: tuple[str, int, str], extra: Sequence[str], org: str | None, now: float
    ) -> None:
        self._names[key] = (now + self.ttl, (tuple(extra), org))
        self._names.move_to_end(key)
        while len(self._names) > self.limit:
            self._names.popitem(last=False)

    def get(self, key: tuple[str, int, str], now: float) -> CertNames | None:
        entry = self._names.get(key)
        if entry is None:
            return None
        if entry[0] <= now:
            del self._names[key]
            return None
        return entry[1]
