"""Read-only packet readers for bench/sniff_bench.py: ``recvmsg`` against a ring.

    python bench/sniff_readers.py recvmsg|ring IFACE EXPR

Both read every packet the filter passes into a ``bytes`` object with its
timestamp, as ``tapproxy sniff`` must before decoding, and do nothing else.
Started, each prints "capturing on IFACE" to stderr; on SIGINT it prints
"READ KERNEL_PACKETS KERNEL_DROPS" to stdout and exits.

* ``recvmsg``: ``proxy.pcap.live.LiveSource.read`` (``recvmsg_into``).
* ``ring``: a ``TPACKET_V3`` memory-mapped receive ring (packet(7),
  Documentation/networking/packet_mmap.rst) on the same socket, filter and
  all: 16 blocks of 4 MiB, each handed back to the kernel once walked. A
  prototype for measurement only, so that the choice in ``proxy.pcap.live``
  rests on a figure.
"""

from __future__ import annotations

import mmap
import select
import signal
import struct
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from proxy.pcap.filter import parse_filter
from proxy.pcap.live import SOL_PACKET, LiveSource

PACKET_RX_RING, PACKET_VERSION, TPACKET_V3 = 5, 10, 2
TP_STATUS_USER = 1
BLOCK_SIZE, BLOCK_NR, FRAME_SIZE = 4 << 20, 16, 1 << 11
_U32 = struct.Struct("=I").unpack_from
_HDR = struct.Struct("=IIIIIIHH").unpack_from  # tpacket3_hdr up to tp_net


def recvmsg_reader(src: LiveSource, stop: list[int]) -> int:
    poller = select.poll()
    poller.register(src.fileno(), select.POLLIN)
    while not stop:
        if poller.poll(250):
            while src.read(512):
                pass
    return src.received


def ring_reader(src: LiveSource, stop: list[int]) -> int:
    sock = src._sock
    sock.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V3)
    req = struct.pack("=7I", BLOCK_SIZE, BLOCK_NR, FRAME_SIZE,
                      BLOCK_SIZE * BLOCK_NR // FRAME_SIZE, 10, 0, 0)  # fmt: skip
    sock.setsockopt(SOL_PACKET, PACKET_RX_RING, req)
    ring = mmap.mmap(sock.fileno(), BLOCK_SIZE * BLOCK_NR, mmap.MAP_SHARED,
                     mmap.PROT_READ | mmap.PROT_WRITE)  # fmt: skip
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    block = count = 0
    packets: list[tuple[float, bytes]] = []
    while not stop:
        base = block * BLOCK_SIZE
        if not _U32(ring, base + 8)[0] & TP_STATUS_USER:  # block_status
            poller.poll(250)
            continue
        num, off = _U32(ring, base + 12)[0], _U32(ring, base + 16)[0]
        for _ in range(num):
            at = base + off
            nxt, sec, nsec, snaplen, _len, _st, mac, _net = _HDR(ring, at)
            packets.append((sec + nsec * 1e-9, ring[at + mac : at + mac + snaplen]))
            off += nxt
        count += num
        packets.clear()
        struct.pack_into("=I", ring, base + 8, 0)  # TP_STATUS_KERNEL: give it back
        block = (block + 1) % BLOCK_NR
    return count


def main() -> int:
    kind, iface, expr = sys.argv[1:4]
    src = LiveSource(iface, parse_filter(expr))
    stop: list[int] = []
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    print(f"capturing on {iface}", file=sys.stderr, flush=True)
    read = (ring_reader if kind == "ring" else recvmsg_reader)(src, stop)
    stats = src.kernel_stats()
    print(read, stats.packets, stats.drops)
    return 0


if __name__ == "__main__":
    sys.exit(main())
