"""proxy.pcap.filter: tcpdump capture-filter subset, table-driven."""

from __future__ import annotations

import pytest

from proxy.pcap.decode import DecodedPacket
from proxy.pcap.filter import FilterError, compile_filter
from tests.unit.test_pcap_builders import packed


def pkt(
    version: int, src: str, dst: str, proto: int, sport: int = 0, dport: int = 0
) -> DecodedPacket:
    return DecodedPacket(
        0.0, 0, version, packed(src), packed(dst), proto, sport, dport, 0, 0, 0, b""
    )


PACKETS = {
    "web": pkt(4, "10.0.0.1", "10.0.0.2", 6, 40000, 80),
    "dns": pkt(4, "10.0.0.1", "192.168.1.53", 17, 5353, 53),
    "tls6": pkt(6, "fd00::1", "fd00::2", 6, 50000, 443),
    "ping": pkt(4, "10.0.0.3", "10.0.0.1", 1),
    "alt": pkt(4, "172.16.5.9", "10.0.0.2", 6, 8080, 40001),
}

CASES = [
    ("tcp", {"web", "tls6", "alt"}),
    ("udp", {"dns"}),
    ("ip", {"web", "dns", "ping", "alt"}),
    ("ip6", {"tls6"}),
    ("host 10.0.0.1", {"web", "dns", "ping"}),
    ("10.0.0.1", {"web", "dns", "ping"}),
    ("src host 10.0.0.1", {"web", "dns"}),
    ("dst host 10.0.0.1", {"ping"}),
    ("src 10.0.0.3", {"ping"}),
    ("host fd00::2", {"tls6"}),
    ("src or dst host 10.0.0.2", {"web", "alt"}),
    ("src and dst net 10.0.0.0/8", {"web", "ping"}),
    ("net 10.0.0.0/8", {"web", "dns", "ping", "alt"}),
    ("net 192.168.0.0 mask 255.255.0.0", {"dns"}),
    ("net 172.16", {"alt"}),
    ("dst net 10", {"web", "ping", "alt"}),
    ("net fd00::/16", {"tls6"}),
    ("port 80", {"web"}),
    ("port http", {"web"}),
    ("src port 40000", {"web"}),
    ("dst port 80", {"web"}),
    ("port 0", set()),  # ICMP has no ports
    ("portrange 400-500", {"tls6"}),
    ("portrange 8000-9000", {"alt"}),
    ("src portrange 40000-50000", {"web", "tls6"}),
    ("tcp port 443", {"tls6"}),
    ("udp port 53", {"dns"}),
    ("tcp dst port 80 or 8080", {"web"}),
    ("port 80 or 443", {"web", "tls6"}),
    ("port 80 || port 53", {"web", "dns"}),
    ("host 10.0.0.1 and not port 80", {"dns", "ping"}),
    ("host 10.0.0.1 && !udp", {"web", "ping"}),
    ("not host 10.0.0.3 and 10.0.0.2", {"web", "alt"}),
    ("not (tcp or udp)", {"ping"}),
    ("!tcp", {"dns", "ping"}),
    ("ip and (port 53 or port 8080)", {"dns", "alt"}),
    ("tcp and ip6", {"tls6"}),
    ("ip6 or udp", {"tls6", "dns"}),
    ("( tcp ) and ( ( port 80 ) )", {"web"}),
    ("TCP AND PORT 80", {"web"}),
    ("tcp and not (src net 172.16.0.0/12 or dst port 443)", {"web"}),
]


@pytest.mark.parametrize(("expr", "expected"), CASES)
def test_filter_matches(expr: str, expected: set[str]) -> None:
    predicate = compile_filter(expr)
    assert {name for name, p in PACKETS.items() if predicate(p)} == expected


ERRORS = [
    ("", "empty", 0),
    ("   ", "empty", 3),
    ("host", "expected an address", 4),
    ("port 99999", "out of range", 5),
    ("host example.com", "not an IP address", 5),
    ("host 10.0.0.0/8", "networks only", 5),
    ("net 10.0.0.1/8", "invalid network", 4),
    ("tcp and", "found the end", 7),
    ("(tcp", "expected ')'", 4),
    ("tcp)", "unexpected ')'", 3),
    ("ether host 1.2.3.4", "not supported", 0),
    ("tcp and icmp", "not supported", 8),
    ("portrange 10", "LOW-HIGH", 10),
    ("host 1.2.3.4 $", "unexpected character '$'", 13),
    ("port nosuchservice", "unknown port name", 5),
    ("net 10.0.0.0 mask", "expected a mask", 17),
    ("tcp tcp", "unexpected 'tcp'", 4),
]


@pytest.mark.parametrize(("expr", "message", "position"), ERRORS)
def test_filter_errors_have_positions(expr: str, message: str, position: int) -> None:
    with pytest.raises(FilterError) as info:
        compile_filter(expr)
    err = info.value
    assert message in err.message
    assert err.position == position
    assert str(err).splitlines()[-1] == "  " + " " * position + "^"
