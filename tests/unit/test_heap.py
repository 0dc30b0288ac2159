"""Free heap pages go back to the OS (glibc's malloc_trim), in a child process."""

from __future__ import annotations

import subprocess
import sys

import pytest

_CHILD = r"""
import re
from proxy.server.heap import release_free_memory

def rss_kb():
    return int(re.search(r"VmRSS:\s+(\d+)", open("/proc/self/status").read()).group(1))

first = bytearray(4 << 20); del first  # a freed mmapped chunk raises glibc's mmap threshold
big, small = [], []
for _ in range(200):  # 200 KiB buffers from the heap, pinned in place by small ones
    big.append(bytearray(200 << 10)); small.append(bytearray(1024))  # malloc, not pymalloc
del big
before = rss_kb()
assert release_free_memory()
print(before, rss_kb())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_trim_returns_free_pages_inside_the_heap() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _CHILD], capture_output=True, text=True, timeout=60, check=True
    ).stdout.split()
    before, after = int(out[0]), int(out[1])
    assert before - after > 20_000, (before, after)  # most of the 40 MB of freed buffers
