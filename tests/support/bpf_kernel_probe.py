"""Run in a namespace: which corpus frames does the kernel let through each filter?

    ip netns exec NS python -m tests.support.bpf_kernel_probe TX_IF RX_IF

``TX_IF`` and ``RX_IF`` are the two ends of a veth pair in the namespace.
For every expression of ``tests.unit.test_pcap_bpf.EXPRESSIONS`` and both
layouts (``RX_IF`` itself: Ethernet; ``any``: cooked), a ``LiveSource`` with
that filter is opened, every corpus frame is sent on ``TX_IF`` with a packet
socket, then a sentinel frame; an unfiltered socket on ``RX_IF`` tells when
the sentinel (and so everything before it) has been delivered. The names of
the corpus frames the filtered socket received are printed as JSON:
``{expression: {"ethernet": [...], "cooked": [...]}}``.
"""

from __future__ import annotations

import json
import select
import socket
import sys
import time

from proxy.pcap.filter import parse_filter
from proxy.pcap.live import ETH_P_ALL, LiveSource
from tests.unit.test_pcap_bpf import CORPUS, EXPRESSIONS
from tests.unit.test_pcap_builders import ether

SENTINEL = ether(b"tapproxy-sentinel" + b"\0" * 40, 0x88B5)  # IEEE local experimental


def _wait_sentinel(watch: LiveSource, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        select.select([watch.fileno()], [], [], max(deadline - time.monotonic(), 0))
        if any(p.data.endswith(SENTINEL[14:]) for p in watch.read()):
            return
    raise TimeoutError("the sentinel frame never arrived")


def _names(source: LiveSource, cooked: bool) -> list[str]:
    by_ip = {frame[14:]: name for name, frame in CORPUS.items()}
    seen = set()
    for p in source.read(10_000):
        ip = p.data[16:] if cooked else p.data[14:]
        if ip in by_ip:
            seen.add(by_ip[ip])
    return sorted(seen)


def probe(tx_if: str, rx_if: str) -> dict[str, dict[str, list[str]]]:
    tx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    tx.bind((tx_if, 0))
    out: dict[str, dict[str, list[str]]] = {}
    for expr in EXPRESSIONS:
        node = parse_filter(expr)
        out[expr] = {}
        for label, iface in (("ethernet", rx_if), ("cooked", "any")):
            watch = LiveSource(rx_if)
            source = LiveSource(iface, node)
            for frame in CORPUS.values():
                tx.send(frame)
            tx.send(SENTINEL)
            _wait_sentinel(watch)
            out[expr][label] = _names(source, label == "cooked")
            source.close()
            watch.close()
    return out


if __name__ == "__main__":
    json.dump(probe(sys.argv[1], sys.argv[2]), sys.stdout)
