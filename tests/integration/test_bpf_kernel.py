"""The kernel's verdicts on our BPF programs equal the Python predicate's.

The unit tests run our programs in an interpreter; here the kernel runs
them. In a namespace made by the test, with a veth pair inside it, every
corpus frame of ``tests.unit.test_pcap_bpf`` is sent on one end while a
``LiveSource`` with each filter listens on the other (Ethernet layout) and
on ``any`` (cooked layout); ``tests.support.bpf_kernel_probe`` reports which
frames each socket received. Needs root; skips otherwise.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from proxy.pcap.decode import Decoder
from proxy.pcap.filter import compile_filter
from proxy.pcap.reader import Packet
from tests.support.netns import REPO, missing_privilege
from tests.unit.test_pcap_bpf import CORPUS, EXPRESSIONS


@pytest.fixture(scope="module")
def namespace() -> Iterator[str]:
    reason = missing_privilege()
    if reason:
        pytest.skip(reason)
    ns = f"tpbpf{os.getpid() % 100000}"

    def ip(*args: str) -> None:
        subprocess.run(["ip", "-n", ns, *args], check=True, capture_output=True, timeout=20)

    subprocess.run(["ip", "netns", "add", ns], check=True, capture_output=True, timeout=20)
    try:
        ip("link", "add", "tpa", "type", "veth", "peer", "name", "tpb")
        for dev in ("tpa", "tpb", "lo"):
            ip("link", "set", dev, "up")
        yield ns
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=20)


def test_kernel_verdicts_equal_predicate(namespace: str) -> None:
    cmd = ["ip", "netns", "exec", namespace, sys.executable, "-m",
           "tests.support.bpf_kernel_probe", "tpa", "tpb"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    received = json.loads(proc.stdout)
    for expr in EXPRESSIONS:
        predicate = compile_filter(expr)
        expected = sorted(
            name
            for name, frame in CORPUS.items()
            if predicate(Decoder().decode(Packet(0.0, 1, frame, 0)))  # type: ignore[arg-type]
        )
        assert received[expr] == {"ethernet": expected, "cooked": expected}, expr
