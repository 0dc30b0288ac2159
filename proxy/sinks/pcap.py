"""``--pcap FILE``: what the proxy relayed, as synthetic TCP conversations.

Each client connection and each upstream connection becomes one TCP
conversation with its real addresses and ports, carrying the bytes the
proxy saw in plaintext (after TLS interception, the decrypted HTTP), with
the proxy's own receive and send times. The first packet of each request
carries a pcapng comment with its flow id, so a packet leads to its record.

The data path only appends a tuple to a bounded queue; a writer thread
builds the packets (checksums, segmentation) and writes them. When more
than ``max_pending`` bytes wait, new data is dropped and counted rather than
stalling the proxy, and a comment in the file says how much was lost.

With ``--workers`` every worker has its own tap appending to one file
(``shared``): the parent writes the file's header before forking
(``create_shared``), and each worker appends whole batches of packet blocks
under the file's lock (proxy/sinks/shared_file.py). Each worker writes its
packets in time order; batches of different workers interleave, so the
order (and tshark's ``frame.time_delta``) holds per connection, with correct
timestamps, rather than across the whole file.
"""

from __future__ import annotations

import queue
import sys
import threading
import time
from typing import Any, Protocol

from proxy.oserrors import reason
from proxy.pcap.writer import Conversation, PcapngWriter
from proxy.sinks.shared_file import LockedAppender
from proxy.words import plural

Address = tuple[str, int]
_OPEN, _DATA, _NOTE, _CLOSE, _STOP, _RESTART = range(6)
#: Seconds a held data event waits for its flow id before it is written without.
NOTE_WAIT = 1.0


class _Output(Protocol):
    def write(self, data: bytes, /) -> int: ...
    def flush(self) -> None: ...
    def close(self) -> None: ...


class PcapTap:
    """Called from the event loop; never blocks."""

    def __init__(
        self,
        path: str,
        sides: str = "both",
        max_pending: int = 64 * 1024 * 1024,
        *,
        shared: bool = False,
    ) -> None:
        self.path = path
        self.shared = shared
        self.client_side = sides in ("both", "client")
        self.upstream_side = sides in ("both", "upstream")
        self.max_pending = max_pending
        self.dropped_bytes = 0
        self.lost = 0  # packets a failed write lost
        self.errors = 0
        self._pending = 0
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self._file: _Output = (
            LockedAppender(path) if shared else open(path, "wb")  # noqa: SIM115 (thread closes it)
        )
        self._thread = threading.Thread(target=self._run, name="tapproxy-pcap", daemon=True)
        self._thread.start()

    @staticmethod
    def create_shared(path: str) -> None:
        """Before ``--workers`` fork: the file and its header, for every worker to append to."""
        with open(path, "wb") as f:
            f.write(PcapngWriter.header_bytes())

    # -- loop side ---------------------------------------------------------------
    def open(self, key: int, client: Address, server: Address) -> None:
        self._queue.put((_OPEN, key, time.time(), client, server))

    def data(self, key: int, from_client: bool, data: bytes, await_note: bool = False) -> None:
        """Bytes one side sent; with ``await_note`` the packets wait for ``note``."""
        n = len(data)
        with self._lock:
            if self._pending + n > self.max_pending:
                self.dropped_bytes += n
                return
            self._pending += n
        self._queue.put((_DATA, key, time.time(), from_client, data, await_note))

    def note(self, key: int, text: str | None) -> None:
        """Comment (or None) for ``key``'s data sent with ``await_note``."""
        self._queue.put((_NOTE, key, text))

    def restart(self, key: int, client: Address, server: Address) -> None:
        """End ``key``'s conversation and start another between the same ends:
        what follows is a stream of its own for the dissectors (HTTP/2 after a
        CONNECT and a ClientHello)."""
        self._queue.put((_RESTART, key, time.time(), client, server))

    def close(self, key: int, reset: bool, from_client: bool) -> None:
        self._queue.put((_CLOSE, key, time.time(), reset, from_client))

    def stop(self, timeout: float = 10.0) -> None:
        self._queue.put((_STOP,))
        self._thread.join(timeout)

    # -- accounting ------------------------------------------------------------------
    def losses(self) -> dict[str, int]:
        """Stats keys: packets a failed write lost, bytes dropped when the writer lagged."""
        return {"lost_pcap": self.lost, "pcap_dropped_bytes": self.dropped_bytes}

    def loss_summary(self) -> list[str]:
        """What was lost, in words, for the exit summary."""
        out = [plural(self.lost, "PCAP packet")] if self.lost else []
        if self.dropped_bytes:
            out.append(plural(self.dropped_bytes, "PCAP byte") + " dropped (writer too slow)")
        return out

    def _failed(self, e: Exception, packets: int) -> None:
        """Say once that the file cannot be written; count what that cost."""
        self.lost += packets
        self.errors += 1
        if self.errors == 1:
            why = reason(e) if isinstance(e, OSError) else str(e)
            print(
                f"tapproxy: cannot write PCAP file {self.path}: {why}; packets that do not "
                "reach it are counted as lost (SIGUSR1 stats, exit summary)",
                file=sys.stderr,
                flush=True,
            )

    # -- writer thread -------------------------------------------------------------
    def _run(self) -> None:
        writer = PcapngWriter(self._file, ordered=True, header=not self.shared)
        convs: dict[int, Conversation] = {}
        # One data event per conversation is held back so that a note (the
        # flow id, known only after the session parsed those bytes) can go on
        # its first packet. Packets are written in time order up to the
        # oldest held event, so the file's timestamps never go back.
        held: dict[int, list[Any]] = {}
        while True:
            event = self._queue.get()
            if event[0] == _STOP:
                for key in list(held):
                    self._write_held(convs, held, key)
                break
            try:
                self._handle(event, writer, convs, held)
            except ValueError as e:
                self._failed(e, 0)
            if self._queue.empty():
                self._release(writer, convs, held)
        self._release(writer, convs, held)
        self._file_close()

    def _handle(
        self,
        event: tuple[Any, ...],
        writer: PcapngWriter,
        convs: dict[int, Conversation],
        held: dict[int, list[Any]],
    ) -> None:
        kind, key = event[0], event[1]
        if kind == _NOTE:
            if key in held:
                held[key][3] = event[2]
                held[key][4] = False
            return
        PcapTap._write_held(convs, held, key)
        if kind == _OPEN:
            convs[key] = writer.open_conversation(event[3], event[4], event[2])
        elif kind == _DATA:
            held[key] = [event[2], event[3], event[4], None, event[5]]
            with self._lock:
                self._pending -= len(event[4])
        elif kind == _CLOSE and key in convs:
            convs.pop(key).close(event[2], rst=event[3], from_client=event[4])
        elif kind == _RESTART and key in convs:
            convs.pop(key).close(event[2])
            convs[key] = writer.open_conversation(event[3], event[4], event[2])

    def _release(
        self, writer: PcapngWriter, convs: dict[int, Conversation], held: dict[int, list[Any]]
    ) -> None:
        """Write what can no longer be preceded by a held event, then flush."""
        now = time.time()
        for key in [k for k, item in held.items() if not item[4] or now - item[0] > NOTE_WAIT]:
            self._write_held(convs, held, key)
        until = min((item[0] for item in held.values()), default=None)
        before = writer.held
        try:
            writer.release(until)
            self._file.flush()
        except OSError as e:
            # What this release handed over is gone (an upper bound: part of
            # it may have reached the disk before it filled up).
            self._failed(e, before - writer.held)

    def _file_close(self) -> None:
        if self.dropped_bytes:
            print(
                f"tapproxy: pcap dropped {plural(self.dropped_bytes, 'byte')} (writer too slow)",
                file=sys.stderr,
            )
        try:
            self._file.close()
        except OSError as e:
            self._failed(e, 0)

    @staticmethod
    def _write_held(convs: dict[int, Conversation], held: dict[int, list[Any]], key: int) -> None:
        item = held.pop(key, None)
        conv = convs.get(key)
        if item is None or conv is None:
            return
        ts, from_client, data, comment, _ = item
        conv.data(ts, from_client, data, comment)
