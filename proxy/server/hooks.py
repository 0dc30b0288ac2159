"""Lifecycle hooks, delivered: subscribers watch flows and may hold them.

A ``Hook`` command from the layers goes to every subscriber interested in
its kind, in the order they were registered. At a holdable point a
subscriber that holds the flow answers True and calls ``resume`` later, with
its verdict; the next subscribers are asked only after that. A plain
``Proceed()`` passes the flow on; any other verdict (edits, a reply, a kill)
is the answer. When every subscriber has let it pass, the flow goes on at
once. The verdict goes back to the flow's connection as ``HookResumed``.

The sinks are the first ``DONE`` subscriber (``ListenerContext.submit``);
the web UI, addons and server replay subscribe here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from proxy.flow.hooks import HoldSwitch, HookKind, HookSettings, Proceed, Verdict
from proxy.flow.record import FlowSource
from proxy.layers.commands import Hook
from proxy.layers.events import HookResumed

Resume = Callable[[Verdict], None]


class HookSubscriber(Protocol):
    """Something that watches flows (and, at the holdable points, may hold them)."""

    @property
    def kinds(self) -> frozenset[HookKind]: ...
    @property
    def holds(self) -> frozenset[HookKind]: ...

    # Optionally ``request_body = True``: REQUEST waits for the whole body
    # (``HookSettings.request_body``); or ``switch``, a ``HoldSwitch`` whose
    # armed points are this subscriber's ``holds`` (the web UI's breakpoints).

    def on_hook(self, kind: HookKind, flow: FlowSource, resume: Resume | None) -> bool:
        """``resume`` is given where the flow may be held: return True to hold it
        and call ``resume(verdict)`` once, later. Otherwise the return is ignored.
        At the holdable points ``flow`` is a ``proxy.flow.hooks.LiveFlow``."""
        ...


class HookBus:
    def __init__(self, subscribers: Sequence[HookSubscriber] = ()) -> None:
        self.subscribers = list(subscribers)

    @property
    def settings(self) -> HookSettings:
        """What the layers should emit for these subscribers."""
        notify: set[HookKind] = set()
        hold: set[HookKind] = set()
        body = False
        switch: HoldSwitch | None = None
        for sub in self.subscribers:
            notify |= sub.kinds
            own = getattr(sub, "switch", None)  # optional: points armed at run time
            if isinstance(own, HoldSwitch):
                switch = own  # its ``holds`` follow the switch: not held statically
                continue
            hold |= sub.holds
            body |= bool(getattr(sub, "request_body", False))  # optional: see HookSettings
        return HookSettings(frozenset(notify), frozenset(hold), body, switch)

    def deliver(self, hook: Hook, feed: Callable[[HookResumed], None]) -> None:
        """Call the subscribers of ``hook``; a held hook's verdict goes to ``feed``."""
        subs = [s for s in self.subscribers if hook.kind in s.kinds]
        if not hook.hold:
            for sub in subs:
                sub.on_hook(hook.kind, hook.flow, None)
            return
        self._ask(hook, subs, 0, feed)

    def _ask(
        self,
        hook: Hook,
        subs: list[HookSubscriber],
        start: int,
        feed: Callable[[HookResumed], None],
    ) -> None:
        for i in range(start, len(subs)):
            sub = subs[i]
            if hook.kind not in sub.holds:
                sub.on_hook(hook.kind, hook.flow, None)
                continue
            resume = _Once(self._answered, hook, subs, i + 1, feed)
            if sub.on_hook(hook.kind, hook.flow, resume):
                return  # held: the subscriber resumes it
            if resume.verdict is not None:
                return  # answered synchronously
        feed(HookResumed(hook.kind, Proceed(), hook.stream))

    def _answered(
        self,
        hook: Hook,
        subs: list[HookSubscriber],
        after: int,
        feed: Callable[[HookResumed], None],
        verdict: Verdict,
    ) -> None:
        if verdict == Proceed():
            self._ask(hook, subs, after, feed)
        else:
            feed(HookResumed(hook.kind, verdict, hook.stream))


class _Once:
    """A resume callback that acts on its first call only."""

    __slots__ = ("after", "answered", "feed", "hook", "subs", "verdict")

    def __init__(
        self,
        answered: Callable[
            [Hook, list[HookSubscriber], int, Callable[[HookResumed], None], Verdict], None
        ],
        hook: Hook,
        subs: list[HookSubscriber],
        after: int,
        feed: Callable[[HookResumed], None],
    ) -> None:
        self.answered = answered
        self.hook, self.subs, self.after, self.feed = hook, subs, after, feed
        self.verdict: Verdict | None = None

    def __call__(self, verdict: Verdict) -> None:
        if self.verdict is None:
            self.verdict = verdict
            self.answered(self.hook, self.subs, self.after, self.feed, verdict)
