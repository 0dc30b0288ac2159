"""Transparent mode in network namespaces the test makes: a client that knows
nothing of the proxy reaches an HTTP and an HTTPS server through tapproxy.

Three namespaces: the client, a router where tapproxy runs, the server. The
client's default route is the router; in the router an iptables ``REDIRECT``
sends what the client opens to ports 80 and 443 to tapproxy's transparent
listener (``--mode transparent``), which reads the original destination
(``SO_ORIGINAL_DST``) and connects to the server itself (its own traffic
leaves through OUTPUT, which has no rule: no loop). Records show the
original destination; the HTTPS one is intercepted (``--mitm``) with a leaf
named after the client's SNI. The same over IPv6 (``ip6tables`` REDIRECT,
``IP6T_SO_ORIGINAL_DST``), with docs/modes.md's nftables ``redirect``, and
with a ``TPROXY`` rule to a ``transparent:tproxy`` listener
(``IP_TRANSPARENT``, no rewrite). A client connecting to the
listener directly is refused as a loop. Namespaces (and with them their
rules) are deleted by the fixture.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.certs import CertAuthority
from tests.support.netns import missing_privilege, wait_listening, wait_stderr_line
from tests.support.proxyproc import complete_records

SERVER = r"""
import http.server, json, socket, ssl, sys, threading
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"path": self.path, "host": self.headers.get("Host"),
                           "tls": isinstance(self.connection, ssl.SSLSocket)}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
class DualStack(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6  # "::" takes IPv4 too (v4-mapped)
plain = DualStack(("::", 80), H)
other = DualStack(("::", 8000), H)  # the port the TPROXY rule catches
nft = DualStack(("::", 81), H)  # the port the nftables rule redirects
threading.Thread(target=nft.serve_forever, daemon=True).start()
tls = DualStack(("::", 443), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1])
tls.socket = ctx.wrap_socket(tls.socket, server_side=True)
threading.Thread(target=tls.serve_forever, daemon=True).start()
threading.Thread(target=other.serve_forever, daemon=True).start()
plain.serve_forever()
"""


def _skip_reason() -> str | None:
    reason = missing_privilege()
    for tool in ("iptables", "nft"):
        if reason is None and shutil.which(tool) is None:
            reason = f"needs {tool} (apt-get install iptables nftables)"
    return reason


pytestmark = pytest.mark.skipif(_skip_reason() is not None, reason=str(_skip_reason()))


def run(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True, timeout=30)


@dataclass
class Net:
    client: str
    router: str
    server: str
    router_ip: str  # on the client's side
    server_ip: str
    server_ip6: str

    def ns(self, name: str, *cmd: str) -> list[str]:
        return ["ip", "netns", "exec", name, *cmd]

    exec = ns  # what tests.support.netns.wait_listening calls


@pytest.fixture(scope="module")
def net() -> Iterator[Net]:
    tag = str(os.getpid() % 100000)
    n = os.getpid() % 200 + 20
    net = Net(f"tpt-c{tag}", f"tpt-r{tag}", f"tpt-s{tag}", f"10.201.{n}.2", f"10.202.{n}.2",
              f"fd20:{n}:2::2")  # fmt: skip
    try:
        for name in (net.client, net.router, net.server):
            run("ip", "netns", "add", name)
            run("ip", "-n", name, "link", "set", "lo", "up")
        run("ip", "link", "add", f"tc{tag}", "netns", net.client, "type", "veth",
            "peer", "name", f"trc{tag}", "netns", net.router)  # fmt: skip
        run("ip", "link", "add", f"trs{tag}", "netns", net.router, "type", "veth",
            "peer", "name", f"ts{tag}", "netns", net.server)  # fmt: skip
        for name, ifname, cidr in (
            (net.client, f"tc{tag}", f"10.201.{n}.1/24"),
            (net.router, f"trc{tag}", f"{net.router_ip}/24"),
            (net.router, f"trs{tag}", f"10.202.{n}.1/24"),
            (net.server, f"ts{tag}", f"{net.server_ip}/24"),
        ):
            run("ip", "-n", name, "addr", "add", cidr, "dev", ifname)
            run("ip", "-n", name, "link", "set", ifname, "up")
        for name, ifname, cidr in (
            (net.client, f"tc{tag}", f"fd20:{n}:1::1/64"),
            (net.router, f"trc{tag}", f"fd20:{n}:1::2/64"),
            (net.router, f"trs{tag}", f"fd20:{n}:2::1/64"),
            (net.server, f"ts{tag}", f"{net.server_ip6}/64"),
        ):
            run("ip", "-n", name, "-6", "addr", "add", cidr, "dev", ifname, "nodad")
        run("ip", "-n", net.client, "route", "add", "default", "via", net.router_ip)
        run("ip", "-n", net.server, "route", "add", "default", "via", f"10.202.{n}.1")
        run("ip", "-n", net.client, "-6", "route", "add", "default", "via", f"fd20:{n}:1::2")
        run("ip", "-n", net.server, "-6", "route", "add", "default", "via", f"fd20:{n}:2::1")
        router = functools.partial(net.ns, net.router)
        run(*router("sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1",
                    "net.ipv4.conf.all.rp_filter=0"))  # fmt: skip
        for tables in ("iptables", "ip6tables"):  # REDIRECT: HTTP and HTTPS to the listener
            for port in ("80", "443"):
                run(*router(tables, "-t", "nat", "-A", "PREROUTING", "-i", f"trc{tag}",
                            "-p", "tcp", "--dport", port, "-j", "REDIRECT",
                            "--to-ports", "8080"))  # fmt: skip
        # TPROXY (docs/modes.md): port 8000 to the transparent:tproxy listener, unrewritten.
        run(*router("iptables", "-t", "mangle", "-A", "PREROUTING", "-i", f"trc{tag}", "-p", "tcp",
                    "--dport", "8000", "-j", "TPROXY", "--on-port", "8081",
                    "--tproxy-mark", "0x1/0x1"))  # fmt: skip
        # nftables (docs/modes.md's recipe): port 81 redirected to the same listener.
        run(*router("nft", "add", "table", "inet", "tapproxy"))
        run(*router("nft", "add", "chain", "inet", "tapproxy", "prerouting",
                    "{ type nat hook prerouting priority dstnat; }"))  # fmt: skip
        run(*router("nft", "add", "rule", "inet", "tapproxy", "prerouting", "iifname",
                    f"trc{tag}", "tcp", "dport", "81", "redirect", "to", ":8080"))  # fmt: skip
        run(*router("ip", "rule", "add", "fwmark", "0x1/0x1", "lookup", "100"))
        run(*router("ip", "route", "add", "local", "0.0.0.0/0", "dev", "lo", "table", "100"))
        yield net
    finally:
        for name in (net.client, net.router, net.server):
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)


@dataclass
class Setup:
    net: Net
    ca: CertAuthority
    flows: Path
    proxy_ca: Path


@pytest.fixture(scope="module")
def setup(net: Net, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    d = tmp_path_factory.mktemp("transparent")
    ca = CertAuthority.create(d / "ca")
    cert = ca.server_cert(["origin.test", net.server_ip], "origin.pem")
    script = d / "server.py"
    script.write_text(SERVER)
    server = subprocess.Popen(
        net.ns(net.server, sys.executable, str(script), str(cert)),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    flows = d / "flows.jsonl"
    proxy = subprocess.Popen(
        net.ns(net.router, sys.executable, "-m", "proxy", "-q",
               "--mode", "transparent@0.0.0.0:8080", "--mode", "transparent@[::]:8080",
               "--mode", "transparent:tproxy@0.0.0.0:8081", "--mitm", "--certs", str(d / "certs"),
               "--upstream-ca", str(ca.cert_path), "--flow-log", str(flows)),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=Path(__file__).parents[2],
    )  # fmt: skip
    try:
        wait_stderr_line(proxy, "active:")  # after every listener's line
        wait_listening(net, net.server, 443)  # type: ignore[arg-type]
        yield Setup(net, ca, flows, d / "certs" / "tapproxy-ca.pem")
    finally:
        for proc in (proxy, server):
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def client_curl(s: Setup, *args: str) -> dict[str, Any]:
    out = subprocess.run(
        s.net.ns(s.net.client, "curl", "-sS", "--max-time", "20", *args),
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def record(s: Setup, pred: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = [r for r in complete_records(s.flows) if pred(r)]
        if found:
            return found[-1]
        if time.monotonic() > deadline:
            raise AssertionError(f"no matching record in {complete_records(s.flows)}")
        time.sleep(0.05)


def test_plain_http_reaches_the_server_and_records_the_original_destination(
    setup: Setup,
) -> None:
    s = setup
    got = client_curl(s, "-H", "Host: origin.test", f"http://{s.net.server_ip}/hello")
    assert got == {"path": "/hello", "host": "origin.test", "tls": False}
    rec = record(s, lambda r: r.get("request", {}).get("url", "").endswith("/hello"))
    assert rec["request"]["url"] == "http://origin.test/hello"  # named by the client's Host
    assert rec["mode"] == "transparent"
    assert rec["route"] == {"via": "direct", "original_dst": {"ip": s.net.server_ip, "port": 80}}
    assert ["Host", "origin.test"] in rec["request"]["headers"]
    assert rec["server"] == {"ip": s.net.server_ip, "port": 80}


def test_https_is_intercepted_with_a_leaf_for_the_sni(setup: Setup) -> None:
    s = setup
    got = client_curl(
        s, "--resolve", f"origin.test:443:{s.net.server_ip}", "--cacert", str(s.proxy_ca),
        "https://origin.test/secure",
    )  # fmt: skip
    assert got == {"path": "/secure", "host": "origin.test", "tls": True}
    rec = record(s, lambda r: r.get("request", {}).get("url", "").endswith("/secure"))
    assert rec["request"]["url"] == "https://origin.test/secure"  # named by the SNI
    assert rec["tls"]["intercepted"] is True
    assert rec["tls"]["client"]["sni"] == "origin.test"
    assert rec["tls"]["server"]["sni"] == "origin.test"
    assert rec["route"]["original_dst"] == {"ip": s.net.server_ip, "port": 443}


def test_connecting_to_the_listener_directly_is_refused_as_a_loop(setup: Setup) -> None:
    s = setup
    out = subprocess.run(
        s.net.ns(s.net.client, "curl", "-sS", "--max-time", "10", f"http://{s.net.router_ip}:8080/"),
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert out.returncode != 0  # closed without an answer
    rec = record(s, lambda r: "own listener" in str(r.get("error")))
    assert rec["kind"] == "tcp" and rec["mode"] == "transparent"


def test_ipv6_redirect_reads_ip6t_so_original_dst(setup: Setup) -> None:
    s = setup
    got = client_curl(s, "-H", "Host: origin.test", f"http://[{s.net.server_ip6}]/six")
    assert got == {"path": "/six", "host": "origin.test", "tls": False}
    rec = record(s, lambda r: r.get("request", {}).get("url", "").endswith("/six"))
    assert rec["route"]["original_dst"] == {"ip": s.net.server_ip6, "port": 80}
    assert rec["client"]["ip"].startswith("fd20:")


def test_tproxy_listener_sees_the_destination_unrewritten(setup: Setup) -> None:
    s = setup
    got = client_curl(s, "-H", "Host: origin.test", f"http://{s.net.server_ip}:8000/tproxy")
    assert got == {"path": "/tproxy", "host": "origin.test", "tls": False}
    rec = record(s, lambda r: r.get("request", {}).get("url", "").endswith("/tproxy"))
    assert rec["mode"] == "transparent:tproxy"
    assert rec["route"]["original_dst"] == {"ip": s.net.server_ip, "port": 8000}


def test_nftables_redirect_recipe(setup: Setup) -> None:
    s = setup
    got = client_curl(s, "-H", "Host: origin.test", f"http://{s.net.server_ip}:81/nft")
    assert got == {"path": "/nft", "host": "origin.test", "tls": False}
    rec = record(s, lambda r: r.get("request", {}).get("url", "").endswith("/nft"))
    assert rec["route"]["original_dst"] == {"ip": s.net.server_ip, "port": 81}
