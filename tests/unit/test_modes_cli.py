"""The command line of issue 20's modes: parsing, and what it refuses at start."""

from __future__ import annotations

import pytest

from proxy.cli.args import build_parser
from proxy.cli.main import options_from_args
from proxy.config import ConfigError, parse_mode


def test_modes_parse() -> None:
    m = parse_mode("upstream:http://corp:3128@9000", "127.0.0.1", 8080)
    assert (m.kind, m.via, m.port, m.label) == ("upstream", "http://corp:3128", 9000, m.label)
    assert parse_mode("socks5@1080", "127.0.0.1", 8080).kind == "socks5"
    t = parse_mode("transparent:tproxy@[::]:8081", "127.0.0.1", 8080)
    assert (t.kind, t.tproxy, t.host, t.port) == ("transparent", True, "::", 8081)
    assert parse_mode("upstream:https://corp:3128", "127.0.0.1", 8080).via == "https://corp:3128"
    with pytest.raises(ConfigError, match="unknown scheme"):
        parse_mode("upstream:ftp://corp:3128", "127.0.0.1", 8080)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--mode", "socks5@0.0.0.0:1080"], "open forward proxy"),
        (["--mode", "upstream:http://p:1@0.0.0.0:8080"], "open forward proxy"),
        (["--upstream-auth", "u:p"], "needs a --mode upstream:URL"),
        (["--mode", "upstream:http://p:1", "--upstream-auth", "nocolon"], "USER:PASS"),
        (["--client-certs", "/nonexistent/certs"], "no such file or directory"),
    ],
)
def test_refused_at_start(argv: list[str], message: str) -> None:
    args = build_parser().parse_args(argv)
    with pytest.raises(ConfigError, match=message):
        options_from_args(args)


def test_transparent_may_listen_beyond_loopback_and_bypass_comes_from_no_proxy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NO_PROXY", "internal.example")
    args = build_parser().parse_args(
        ["--mode", "transparent@0.0.0.0:8080", "--mode", "upstream:http://p:3128@0"]
    )
    options = options_from_args(args)
    assert options.bypass is not None and options.bypass.matches("a.internal.example", 80)
