"""Live packets from an ``AF_PACKET`` socket, filtered in the kernel by classic BPF.

``LiveSource(interface, ...)`` opens a packet socket (packet(7)) bound to one
interface, or to all of them for ``any``, attaches the capture filter
compiled by ``proxy.pcap.bpf`` with ``SO_ATTACH_FILTER`` (socket(7)), and
yields ``proxy.pcap.reader.Packet`` objects that the offline decoder reads
unchanged:

* an Ethernet or loopback device is read with ``SOCK_RAW``: whole frames,
  link type Ethernet;
* ``any`` (and a device without an Ethernet header, such as a tun device) is
  read with ``SOCK_DGRAM``, "cooked": the kernel strips the link header and
  tells the protocol in ``sockaddr_ll``, from which a Linux SLL header is built
  (link type 113), the way libpcap captures ``any``.

Set-up follows libpcap's order so that no unfiltered packet reaches user
space: the socket starts with a program that rejects everything, is bound,
drained of what arrived before the program was in place, and only then gets
the real filter. The kernel's counters (``PACKET_STATISTICS``: packets that
passed the filter, and drops for a full receive queue) are read at the end;
reading them resets them, so they are accumulated here.

Why ``recvmsg_into`` and not a ``TPACKET_V3`` memory-mapped ring, measured
with bench/sniff_bench.py on this busy 2-core machine (shared with nginx and
wrk): at 1.1 Gbit/s of mixed HTTP on loopback, ``sniff`` keeps up with no
kernel drop and spends 57 to 76 µs of CPU per packet (decode, reassembly,
HTTP). A process that only reads and copies out each packet spends 24 µs
with ``recvmsg_into`` and 19 to 21 µs with a ring (bench/sniff_readers.py,
a prototype). The ring's 3 to 5 µs are 5 to 8% of ``sniff``'s per-packet
cost, less than the spread between runs, and neither path drops at 1 Gbit/s,
so the simpler path is kept. What does prevent drops is a large receive queue
(``SO_RCVBUFFORCE``, 64 MiB) read in batches until empty, into one reused
buffer (``recvmsg`` with a 256 KiB size would allocate that much per packet).
docs/analyze.md has the figures.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
import time
from dataclasses import dataclass
from pathlib import Path

from proxy.pcap.bpf import BpfError, Insn, Link, compile_bpf, reject_all, sock_fprog
from proxy.pcap.decode import LINKTYPE_ETHERNET, LINKTYPE_LINUX_SLL
from proxy.pcap.filter import Node
from proxy.pcap.reader import Packet

# linux/if_ether.h, linux/if_packet.h, asm-generic/socket.h, linux/if_arp.h
ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_STATISTICS = 6
PACKET_MR_PROMISC = 1
SO_ATTACH_FILTER = 26
SO_TIMESTAMPNS = 35
SO_RCVBUFFORCE = 33
ARPHRD_ETHER = 1
ARPHRD_LOOPBACK = 772
ANY = "any"
DEFAULT_SNAPLEN = 262144  # tcpdump's default: a whole 64 KiB GSO super-frame fits
DEFAULT_RCVBUF = 64 << 20

_TIMESPEC = struct.Struct("=qq")
_CMSG_SPACE = socket.CMSG_SPACE(_TIMESPEC.size)
_TPACKET_STATS = struct.Struct("=II")
_SLL = struct.Struct(">HHH8sH")

NO_PRIVILEGE_HELP = (
    "capturing packets needs root or the CAP_NET_RAW capability "
    "(and CAP_NET_ADMIN for --promisc and a large receive buffer).\n"
    "  run it as root:       sudo tapproxy sniff ...\n"
    "  or grant the python interpreter the capabilities (affects every script it runs):\n"
    "                        sudo setcap cap_net_raw,cap_net_admin+eip "
    "$(readlink -f $(command -v python3))"
)


class CaptureSetupError(Exception):
    """The capture could not start: no such interface, no privilege, ..."""

    def __init__(self, message: str, privilege: bool = False) -> None:
        super().__init__(message)
        self.privilege = privilege


@dataclass(frozen=True, slots=True)
class KernelStats:
    """``struct tpacket_stats``: packets that passed the filter (drops included), drops."""

    packets: int
    drops: int


def link_for(interface: str) -> Link:
    """Ethernet framing for Ethernet and loopback devices, cooked for the rest."""
    if interface == ANY:
        return Link.COOKED
    try:
        hatype = int(Path(f"/sys/class/net/{interface}/type").read_text())
    except (OSError, ValueError):
        return Link.COOKED
    return Link.ETHERNET if hatype in (ARPHRD_ETHER, ARPHRD_LOOPBACK) else Link.COOKED


class LiveSource:
    """One packet socket; ``read`` returns the packets queued so far."""

    def __init__(
        self, interface: str, filter: Node | None = None, snaplen: int = DEFAULT_SNAPLEN,
        promisc: bool = False, rcvbuf: int = DEFAULT_RCVBUF,
    ) -> None:  # fmt: skip
        self.interface = interface
        self.snaplen = snaplen
        self.link = link_for(interface)
        self.linktype = LINKTYPE_ETHERNET if self.link is Link.ETHERNET else LINKTYPE_LINUX_SLL
        self.kernel_filter = True  # False: the filter was too complex, user space filters alone
        self.received = 0
        self._packets = self._drops = 0
        self._buf = bytearray(snaplen)  # one receive buffer, reused
        self._view = memoryview(self._buf)
        ifindex = _ifindex(interface)
        self._sock = _open(self.link)
        try:
            self._setup(ifindex, filter, promisc, rcvbuf)
        except BaseException:
            self._sock.close()
            raise

    def _setup(self, ifindex: int, node: Node | None, promisc: bool, rcvbuf: int) -> None:
        sock = self._sock
        self._attach(reject_all())
        if self.interface != ANY:
            sock.bind((self.interface, ETH_P_ALL))
        if promisc and ifindex:
            mreq = struct.pack("=iHH8s", ifindex, PACKET_MR_PROMISC, 0, b"")
            sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, rcvbuf)
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        sock.setblocking(False)
        _drain(sock)
        self.kernel_stats()  # forget what the reject-all program saw
        self._packets = self._drops = 0
        self._attach(self._program(node))

    def _program(self, node: Node | None) -> list[Insn]:
        loopback = _loopback_index()
        try:
            return compile_bpf(node, self.link, self.snaplen, loopback)
        except BpfError:
            self.kernel_filter = False
            return compile_bpf(None, self.link, self.snaplen, loopback)

    def _attach(self, program: list[Insn]) -> None:
        fprog, buf = sock_fprog(program)
        self._sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
        del buf  # the kernel has copied the program

    def stop_receiving(self) -> None:
        """Queue nothing more; what is queued can still be read (to drain it at the end)."""
        self._attach(reject_all())

    def fileno(self) -> int:
        return self._sock.fileno()

    def read(self, limit: int = 512) -> list[Packet]:
        """Up to ``limit`` queued packets, without blocking (an empty list: none)."""
        recv, buffers, view = self._sock.recvmsg_into, [self._buf], self._view
        out: list[Packet] = []
        cooked = self.link is Link.COOKED
        for _ in range(limit):
            try:
                size, ancdata, _flags, addr = recv(buffers, _CMSG_SPACE)
            except BlockingIOError:
                break
            ts = _timestamp(ancdata)
            data = view[:size].tobytes()  # copies the packet, not the whole buffer
            if cooked:
                data = _sll_header(addr) + data
            out.append(Packet(ts, self.linktype, data, self.received))
            self.received += 1
        return out

    def kernel_stats(self) -> KernelStats:
        """Totals since the filter was attached (the kernel resets its counters on each read)."""
        raw = self._sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, _TPACKET_STATS.size)
        packets, drops = _TPACKET_STATS.unpack(raw)
        self._packets += packets
        self._drops += drops
        return KernelStats(self._packets, self._drops)

    def close(self) -> None:
        self._sock.close()


def _ifindex(interface: str) -> int:
    if interface == ANY:
        return 0
    try:
        return socket.if_nametoindex(interface)
    except OSError:
        raise CaptureSetupError(f"no such interface: {interface!r}") from None


def _open(link: Link) -> socket.socket:
    kind = socket.SOCK_RAW if link is Link.ETHERNET else socket.SOCK_DGRAM
    try:
        return socket.socket(socket.AF_PACKET, kind, socket.htons(ETH_P_ALL))
    except PermissionError:
        who = "root" if os.geteuid() == 0 else f"uid {os.geteuid()}"
        raise CaptureSetupError(
            f"permission denied opening a packet socket as {who}: {NO_PRIVILEGE_HELP}",
            privilege=True,
        ) from None


def _loopback_index() -> int | None:
    """The loopback device's index (1 on Linux, but looked up), or None."""
    for index, name in socket.if_nameindex():
        try:
            if int(Path(f"/sys/class/net/{name}/type").read_text()) == ARPHRD_LOOPBACK:
                return index
        except (OSError, ValueError):
            continue
    return None


def _drain(sock: socket.socket) -> None:
    """Discard what was queued before the socket was fully set up."""
    while True:
        try:
            sock.recv(1)
        except BlockingIOError:
            return
        except OSError as e:  # pragma: no cover - e.g. ENETDOWN
            if e.errno != errno.EINTR:
                return


def _timestamp(ancdata: list[tuple[int, int, bytes]]) -> float:
    """The kernel's receive time (``SCM_TIMESTAMPNS``), else now."""
    for level, kind, value in ancdata:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(value) >= 16:
            sec, nsec = _TIMESPEC.unpack_from(value)
            return float(sec + nsec * 1e-9)
    return time.time()


def _sll_header(addr: tuple[str, int, int, int, bytes]) -> bytes:
    """A Linux cooked (SLL) header from ``sockaddr_ll``: https://www.tcpdump.org/linktypes/LINKTYPE_LINUX_SLL.html"""
    _ifname, proto, pkttype, hatype, hwaddr = addr
    return _SLL.pack(pkttype, hatype, len(hwaddr), hwaddr[:8], proto)
