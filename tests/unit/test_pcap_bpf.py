"""proxy.pcap.bpf: the filter compiled to classic BPF gives the predicate's verdicts.

Each expression is compiled both ways and run over a corpus of frames: our
cBPF program in a small interpreter (``tests.support.bpfvm``), the Python
predicate on the decoded packet, and, where tcpdump is installed, libpcap's
own program for the same expression (``tcpdump -ddd``). Programs differ;
verdicts must not. The kernel itself checks every program (``SO_ATTACH_FILTER``
on a UDP socket validates it without privilege).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
from functools import cache

import pytest

from proxy.pcap.bpf import (
    PACKET_OUTGOING,
    BpfError,
    Link,
    compile_bpf,
    dump,
    reject_all,
    sock_fprog,
)
from proxy.pcap.decode import Decoder
from proxy.pcap.filter import compile_filter, parse_filter
from proxy.pcap.reader import Packet
from tests.support.bpfvm import Meta, parse_ddd, run
from tests.unit.test_pcap_builders import ether, ipv4, ipv6, tcp, udp
from tests.unit.test_pcap_filter import CASES

SO_ATTACH_FILTER = 26


def _frame(ip: bytes, etype: int = 0x0800) -> bytes:
    return ether(ip, etype)


def _v4(src: str, dst: str, l4: bytes, proto: int = 6, frag: int = 0) -> bytes:
    return _frame(ipv4(src, dst, l4, proto, frag=frag))


def _v6(src: str, dst: str, l4: bytes, nh: int = 6) -> bytes:
    return _frame(ipv6(src, dst, l4, nh), 0x86DD)


# Frames every decoder and compiler agree on: no VLAN tags, no IPv6 extension
# headers, no fragments (those have their own tests below).
CORPUS: dict[str, bytes] = {
    "web": _v4("10.0.0.1", "10.0.0.2", tcp(40000, 80)),
    "web-back": _v4("10.0.0.2", "10.0.0.1", tcp(80, 40000)),
    "dns": _v4("10.0.0.1", "192.168.1.53", udp(5353, 53), 17),
    "tls6": _v6("fd00::1", "fd00::2", tcp(50000, 443)),
    "udp6": _v6("fd00::2", "2001:db8::9", udp(53, 53), 17),
    "ping": _v4("10.0.0.3", "10.0.0.1", b"\x08\x00" + b"\0" * 6, 1),
    "ping6": _v6("fd00::1", "fd00::3", b"\x80\x00" + b"\0" * 6, 58),
    "alt": _v4("172.16.5.9", "10.0.0.2", tcp(8080, 40001)),
    "v4opts": _frame(
        bytes([0x46]) + ipv4("10.9.9.9", "10.0.0.2", b"\0\0\0\0" + tcp(443, 8443))[1:]
    ),
    "loop": _v4("127.0.0.1", "127.0.0.1", tcp(8000, 8000)),
}
# Fix the IPv4 options frame: IHL 6, total length 44, four bytes of options.
_opts = bytearray(CORPUS["v4opts"])
_opts[14 + 2 : 14 + 4] = (20 + 4 + 20).to_bytes(2, "big")
CORPUS["v4opts"] = bytes(_opts)

EXTRA = [
    ("ip6 and tcp", {"tls6"}),
    ("tcp port 8443", {"v4opts"}),
    ("src port 443", {"v4opts"}),
    ("not ip", {"tls6", "udp6", "ping6"}),
    ("ip6 and not tcp", {"udp6", "ping6"}),
    ("src and dst port 8000", {"loop"}),
    ("src and dst host 127.0.0.1", {"loop"}),
    ("net 0.0.0.0/0 and udp", {"dns"}),
    ("net ::/0 and udp", {"udp6"}),
    ("dst net 2001:db8::/32", {"udp6"}),
    ("(tcp or udp) and not (port 80 or port 53)", {"tls6", "alt", "v4opts", "loop"}),
    ("udp portrange 50-60", {"dns", "udp6"}),
    ("ip6 host fd00::1 or ip host 10.0.0.3", {"tls6", "ping6", "ping"}),
]
EXPRESSIONS = [expr for expr, _ in CASES] + [expr for expr, _ in EXTRA]


def _decoded(frame: bytes) -> object:
    d = Decoder().decode(Packet(0.0, 1, frame, 0))
    assert d is not None
    return d


def _ours(expr: str, frame: bytes, link: Link = Link.ETHERNET) -> bool:
    program = compile_bpf(parse_filter(expr), link)
    if link is Link.COOKED:
        return run(program, frame[14:], int.from_bytes(frame[12:14], "big")) != 0
    return run(program, frame) != 0


@cache
def _libpcap(expr: str) -> list[object] | None:
    if shutil.which("tcpdump") is None:
        return None
    proc = subprocess.run(
        ["tcpdump", "-y", "EN10MB", "-ddd", expr], capture_output=True, text=True, timeout=20
    )
    return parse_ddd(proc.stdout) if proc.returncode == 0 else None  # type: ignore[return-value]


@pytest.mark.parametrize("expr", EXPRESSIONS)
@pytest.mark.parametrize("link", [Link.ETHERNET, Link.COOKED])
def test_bpf_verdicts_equal_predicate(expr: str, link: Link) -> None:
    predicate = compile_filter(expr)
    for name, frame in CORPUS.items():
        expected = predicate(_decoded(frame))  # type: ignore[arg-type]
        assert _ours(expr, frame, link) == expected, (expr, name)


@pytest.mark.parametrize(("expr", "names"), EXTRA)
def test_extra_cases_match_what_they_say(expr: str, names: set[str]) -> None:
    predicate = compile_filter(expr)
    assert {n for n, f in CORPUS.items() if predicate(_decoded(f))} == names  # type: ignore[arg-type]


@pytest.mark.parametrize("expr", EXPRESSIONS)
def test_bpf_verdicts_equal_libpcap(expr: str) -> None:
    theirs = _libpcap(expr)
    if theirs is None:
        pytest.skip("tcpdump is not installed or does not take this expression")
    for name, frame in CORPUS.items():
        assert (run(theirs, frame) != 0) == _ours(expr, frame), (expr, name)  # type: ignore[arg-type]


def _fragment(offset8: int, more: bool) -> bytes:
    frag = (0x2000 if more else 0) | offset8
    return _v4("10.0.0.1", "10.0.0.2", tcp(40000, 80) if offset8 == 0 else b"x" * 24, 6, frag)


@pytest.mark.parametrize("expr", ["port 80", "tcp dst port 80", "portrange 1-100"])
def test_port_tests_match_only_first_fragments_like_libpcap(expr: str) -> None:
    first, later = _fragment(0, True), _fragment(3, False)
    assert _ours(expr, first) and not _ours(expr, later)
    theirs = _libpcap(expr)
    if theirs is not None:
        assert run(theirs, first) != 0 and run(theirs, later) == 0  # type: ignore[arg-type]


def test_host_tests_match_every_fragment() -> None:
    assert _ours("host 10.0.0.2", _fragment(3, False))
    assert _ours("tcp", _fragment(3, False))


def test_unjudgeable_frames_are_passed_up_for_the_predicate() -> None:
    """In-band VLAN tags and IPv6 extension headers: accepted, the predicate decides."""
    tagged = ether(ipv4("10.0.0.1", "10.0.0.2", tcp(1, 2)), vlans=(0x8100,))
    hop_by_hop = bytes([6, 0]) + b"\0" * 6
    ext = _frame(ipv6("fd00::1", "fd00::2", hop_by_hop + tcp(1, 2), nh=0), 0x86DD)
    assert _ours("port 80", tagged)
    assert _ours("port 80", ext)
    assert not compile_filter("port 80")(_decoded(ext))  # type: ignore[arg-type]
    assert not _ours("ip6", _frame(ipv4("10.0.0.1", "10.0.0.2", tcp(1, 2))))


def test_non_ip_frames_are_judged_by_ethertype() -> None:
    arp = ether(b"\0" * 28, 0x0806)
    assert not _ours("tcp or udp or ip or ip6", arp)
    assert _ours("not tcp", arp)


def test_snaplen_is_the_accept_value() -> None:
    program = compile_bpf(parse_filter("tcp"), Link.ETHERNET, snaplen=96)
    assert run(program, CORPUS["web"]) == 96
    assert run(reject_all(), CORPUS["web"]) == 0


@pytest.mark.parametrize("expr", EXPRESSIONS)
def test_the_kernel_accepts_every_program(expr: str) -> None:
    for link in Link:
        fprog, buf = sock_fprog(compile_bpf(parse_filter(expr), link))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
        del buf


def test_dump_is_tcpdump_ddd_format() -> None:
    program = compile_bpf(parse_filter("ip"), Link.ETHERNET)
    text = dump(program)
    assert parse_ddd(f"{len(program)}\n{text}") == program


def test_too_long_jumps_are_refused_not_miscompiled() -> None:
    expr = " or ".join(f"net fd{i:02x}::/16" for i in range(60))
    with pytest.raises(BpfError):
        compile_bpf(parse_filter(expr), Link.ETHERNET)


def test_loopback_outgoing_copies_are_dropped_in_the_kernel() -> None:
    """Each packet on lo is seen once, as it arrives (libpcap does the same)."""
    frame = CORPUS["loop"]
    for node in (None, parse_filter("tcp")):
        program = compile_bpf(node, Link.ETHERNET, loopback=1)
        assert run(program, frame, meta=Meta(0x0800, PACKET_OUTGOING, 1)) == 0
        assert run(program, frame, meta=Meta(0x0800, 0, 1)) != 0
        assert run(program, frame, meta=Meta(0x0800, PACKET_OUTGOING, 2)) != 0
