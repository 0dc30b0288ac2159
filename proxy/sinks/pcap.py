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
"""

from __future__ import annotations

import queue
import sys
import threading
import time
from typing import IO, Any

from proxy.pcap.writer import Conversation, PcapngWriter

Address = tuple[str, int]
_OPEN, _DATA, _NOTE, _CLOSE, _STOP = range(5)


class PcapTap:
    """Called from the event loop; never blocks."""

    def __init__(self, path: str, sides: str = "both", max_pending: int = 64 * 1024 * 1024) -> None:
        self.path = path
        self.client_side = sides in ("both", "client")
        self.upstream_side = sides in ("both", "upstream")
        self.max_pending = max_pending
        self.dropped_bytes = 0
        self._pending = 0
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self._file: IO[bytes] = open(path, "wb")  # noqa: SIM115 (closed by the thread)
        self._thread = threading.Thread(target=self._run, name="tapproxy-pcap", daemon=True)
        self._thread.start()

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

    def close(self, key: int, reset: bool, from_client: bool) -> None:
        self._queue.put((_CLOSE, key, time.time(), reset, from_client))

    def stop(self, timeout: float = 10.0) -> None:
        self._queue.put((_STOP,))
        self._thread.join(timeout)

    # -- writer thread -------------------------------------------------------------
    def _run(self) -> None:
        writer = PcapngWriter(self._file)
        convs: dict[int, Conversation] = {}
        # One data event per conversation is held back so that a note (the
        # flow id, known only after the session parsed those bytes) can go on
        # its first packet.
        held: dict[int, list[Any]] = {}
        while True:
            event = self._queue.get()
            kind = event[0]
            try:
                if kind == _STOP:
                    for key in list(held):
                        self._write_held(convs, held, key)
                    break
                key = event[1]
                if kind == _NOTE:
                    if key in held:
                        held[key][3] = event[2]
                        held[key][4] = False
                    continue
                self._write_held(convs, held, key)
                if kind == _OPEN:
                    convs[key] = writer.open_conversation(event[3], event[4], event[2])
                elif kind == _DATA:
                    held[key] = [event[2], event[3], event[4], None, event[5]]
                    with self._lock:
                        self._pending -= len(event[4])
                elif kind == _CLOSE and key in convs:
                    convs.pop(key).close(event[2], rst=event[3], from_client=event[4])
                if self._queue.empty():
                    for k in [k for k, item in held.items() if not item[4]]:
                        self._write_held(convs, held, k)
                    self._file.flush()
            except (OSError, ValueError) as e:
                print(f"tapproxy: pcap {self.path}: {e}", file=sys.stderr)
        if self.dropped_bytes:
            print(
                f"tapproxy: pcap dropped {self.dropped_bytes} bytes (writer too slow)",
                file=sys.stderr,
            )
        self._file.close()

    @staticmethod
    def _write_held(convs: dict[int, Conversation], held: dict[int, list[Any]], key: int) -> None:
        item = held.pop(key, None)
        conv = convs.get(key)
        if item is None or conv is None:
            return
        ts, from_client, data, comment, _ = item
        conv.data(ts, from_client, data, comment)
