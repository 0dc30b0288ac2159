"""``ClientEnd``: reads the loop delivers while reading is paused wait for the
resume, in order, the client's FIN behind them.

asyncio's own transports deliver nothing once paused; uvloop reads once after
``connection_made`` even when reading was paused there, which is what these
reads stand for.
"""

from __future__ import annotations

import asyncio

from proxy.server.clientend import BACKLOG, EOF, PEER, ClientEnd


class _Transport:
    def __init__(self) -> None:
        self.reading = True
        self.closed = False

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def close(self) -> None:
        self.closed = True


class _Host:
    """The connection side ``ClientEnd`` calls back: it records what the layers got."""

    def __init__(self, eof_keeps_open: bool = True) -> None:
        self.transport = _Transport()
        self.tls = None
        self.got: list[bytes] = []
        self.eof_keeps_open = eof_keeps_open

    @property
    def closed(self) -> bool:
        return self.transport.closed

    def write_client(self, data: bytes) -> None:
        raise AssertionError("nothing is written in these tests")

    def loop_time(self, at: float | None) -> float:
        return 0.0

    def take_read(self, data: bytes) -> None:
        self.got.append(data)

    def take_eof(self) -> bool:
        self.got.append(b"<EOF>")
        return self.eof_keeps_open


async def _settle() -> None:
    for _ in range(3):  # the release is scheduled with call_soon
        await asyncio.sleep(0)


def _end(host: _Host) -> ClientEnd:
    return ClientEnd(host, lambda _full: None)  # type: ignore[arg-type]


def test_held_reads_and_fin_are_fed_in_order_when_reading_resumes() -> None:
    async def run() -> None:
        host = _Host()
        end = _end(host)
        end.pause(BACKLOG)
        assert end.paused and not host.transport.reading
        end.held += [b"one", b"two", EOF]
        await _settle()
        assert host.got == []
        end.unpause(BACKLOG)
        assert host.transport.reading and host.got == []  # after the current commands
        await _settle()
        assert host.got == [b"one", b"two", b"<EOF>"] and end.held == []

    asyncio.run(run())


def test_nothing_is_fed_while_another_reason_still_pauses() -> None:
    async def run() -> None:
        host = _Host()
        end = _end(host)
        end.pause(BACKLOG)
        end.pause(PEER)
        end.held.append(b"x")
        end.unpause(BACKLOG)
        await _settle()
        assert host.got == [] and end.paused
        end.unpause(PEER)
        await _settle()
        assert host.got == [b"x"]

    asyncio.run(run())


def test_a_fin_the_layers_refuse_closes_the_transport() -> None:
    async def run() -> None:
        host = _Host(eof_keeps_open=False)
        end = _end(host)
        end.pause(BACKLOG)
        end.held.append(EOF)
        end.unpause(BACKLOG)
        await _settle()
        assert host.got == [b"<EOF>"] and host.transport.closed

    asyncio.run(run())
