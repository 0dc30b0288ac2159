"""Breakpoints (proxy.web.intercept): armed only while set, hold what matches,
resume with edits, answer, kill, and go on by themselves after the timeout."""

from __future__ import annotations

import asyncio

import pytest

from proxy.flow.hooks import (
    HoldSwitch,
    HookKind,
    Kill,
    Proceed,
    Reply,
    RequestEdit,
    ResponseEdit,
    Verdict,
)
from proxy.http1.events import Framing, FramingKind, RequestHead, ResponseHead
from proxy.server.hooks import HookBus
from proxy.web.feed import LiveFeed
from proxy.web.intercept import Breakpoints, BreakpointSpec, EditError

NO_BODY = Framing(FramingKind.LENGTH, 0)


class Flow:
    """A flow at a holdable point, as the session's Exchange offers it."""

    def __init__(self, id: str, url: str, body: bytes | None = None) -> None:
        self.id, self.url, self.body = id, url, body
        head = RequestHead(b"GET", b"/x", b"1.1", ((b"Host", b"a.test"),), NO_BODY)
        self.request = self.forward = head
        self.response = None
        self.response_head: ResponseHead | None = None


def by_url(expr: str):  # type: ignore[no-untyped-def]
    if expr.startswith("("):
        raise ValueError("bad filter")
    return lambda flow, kind: expr in flow.url


def test_armed_only_while_set_and_settings_hold_nothing_statically() -> None:
    bp = Breakpoints(by_url, 300)
    settings = HookBus([bp]).settings
    assert settings.hold == frozenset() and settings.switch is bp.switch
    assert bp.switch.kinds == frozenset()
    bp.set(BreakpointSpec("x", request=True, response=True))
    assert bp.switch.kinds == {HookKind.REQUEST, HookKind.RESPONSE_HEAD}
    assert bp.switch.request_body
    bp.set(BreakpointSpec(""))
    assert bp.switch.kinds == frozenset() and not bp.switch.request_body
    with pytest.raises(ValueError):
        bp.set(BreakpointSpec("(broken"))


def test_holds_matching_flows_and_resumes_them_edited() -> None:
    async def run() -> list[Verdict]:
        changes: list[tuple[str, str | None]] = []
        bp = Breakpoints(by_url, 300, lambda i, phase: changes.append((i, phase)))
        bp.set(BreakpointSpec("keep"))
        verdicts: list[Verdict] = []
        assert not bp.on_hook(HookKind.REQUEST, Flow("1", "http://a.test/other"), verdicts.append)
        assert bp.on_hook(HookKind.REQUEST, Flow("2", "http://a.test/keep", b"{}"), verdicts.append)
        (held,) = bp.held()
        assert held["phase"] == "request" and held["body"] == "{}"
        with pytest.raises(EditError):
            bp.resume("2", {"url": "ftp://nope"})
        bp.resume("2", {"method": "post", "headers": [["X-A", "1"]], "body": "[]"})
        assert bp.held() == [] and changes == [("2", "request"), ("2", None)]
        with pytest.raises(KeyError):
            bp.kill("2")
        return verdicts

    (verdict,) = asyncio.run(run())
    assert verdict == Proceed(RequestEdit(b"POST", None, ((b"X-A", b"1"),), b"[]"))


def test_reply_kill_response_edits_and_the_timeout() -> None:
    async def run() -> list[Verdict]:
        bp = Breakpoints(by_url, 300)
        bp.set(BreakpointSpec("x", request=True, response=True, timeout=0.01))
        got: list[Verdict] = []
        for i in "1234":
            assert bp.on_hook(HookKind.REQUEST, Flow(i, "http://x/"), got.append)
        bp.reply("1", {"status": 418, "body": "tea"})
        bp.kill("2")
        flow = Flow("3", "http://x/")
        bp._held.pop("3").timer.cancel()
        flow.response_head = ResponseHead(b"1.1", 200, b"OK", (), NO_BODY)
        assert bp.on_hook(HookKind.RESPONSE_HEAD, flow, got.append)
        assert bp.held()[-1]["status"] == 200
        bp.resume("3", {"status": 203})
        deadline = asyncio.get_running_loop().time() + 5
        while bp.held() and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)  # "4" waits for its timeout, nothing else
        return got

    got = asyncio.run(run())
    assert got[0] == Reply(418, (), b"tea")
    assert got[1] == Kill()
    assert got[2] == Proceed(ResponseEdit(203, None))
    assert isinstance(got[3], Proceed) and got[3].note is not None and "went on" in got[3].note


def test_the_live_feed_asks_for_started_notices_only_while_a_browser_watches() -> None:
    switch = HoldSwitch()
    feed = LiveFeed(switch)
    bus = HookBus([feed, Breakpoints(by_url, 300, switch=switch)])
    assert bus.settings.notify == frozenset() and feed.kinds == frozenset()

    class Socket:
        closed = False

        async def send_str(self, data: str, compress: int | None = None) -> None: ...

    a, b = Socket(), Socket()
    feed.add(a)
    feed.add(b)
    assert switch.notify == {HookKind.STARTED} and feed.kinds == {HookKind.STARTED}
    feed.remove(a)
    assert switch.notify == {HookKind.STARTED}
    feed.remove(b)
    assert switch.notify == frozenset() and feed.kinds == frozenset()
