"""What every scenario of ``python -m bench.run`` stands on (``bench/run.py``).

``Settings`` holds the sizes and durations of a run (``--quick`` shortens
them); ``Bench`` starts the origin once (restarted if it died) and each peer
fresh for each measurement (``start``: a peer that cannot be started is
noted in the table, not fatal), waits for the machine to calm down before a
measurement and meters others' load during it (``quiet``), says where a
client connects through a peer (``target``), runs the Python load clients
pinned to the load CPU (``client_cmd``, ``seq``), and collects the commands
it ran for the report (``commands``).
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from bench.common import LOAD_CPU, ROOT, OtherLoad, taskset, wait_quiet
from bench.origin import Origin, start_origin
from bench.peers import SHELL, Running, start_or_reason
from bench.report import Table

GiB, MiB = 1024**3, 1024**2


@dataclass
class Settings:
    runs: int
    load_seconds: float  # a, b
    warmup_seconds: float
    tls_seconds: float  # d
    big: int = GiB  # c, one stream
    par_size: int = 256 * MiB  # c, each parallel stream
    par_streams: int = 8
    idle_conns: int = 1000  # e
    flows_small: int = 1000
    flows_large: int = 100_000
    seq_requests: int = 2000  # f
    seq_warmup: int = 200
    h2_requests: int = 20_000  # h, per h2load run
    quiet_wait: float = 5.0  # max wait for other processes to calm down before a measurement


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class Bench:
    def __init__(self, settings: Settings, peers: tuple[str, ...], workdir: Path) -> None:
        self.s = settings
        self.peers = peers
        self.workdir = workdir
        self.commands: dict[str, str] = {}
        self.origin: Origin | None = None
        self._n = 0
        self.meter: OtherLoad  # others' load during a bulk download (set by bench.bulk)

    # -- plumbing ----------------------------------------------------------------

    def get_origin(self) -> Origin:
        if self.origin is None or not self.origin.alive():
            self.origin = start_origin(self.workdir / "origin", (self.s.big, self.s.par_size))
            self.commands["origin"] = self.origin.cmd
        return self.origin

    def start(self, name: str, scenario: str, table: Table) -> Running | None:
        self._n += 1
        wd = self.workdir / f"{scenario}-{name.replace(' ', '_')}-{self._n}"
        origin = self.get_origin().http_port if name == SHELL else None
        run = start_or_reason(name, wd, origin=origin)
        if isinstance(run, str):
            table.note(name, f"not run: {run}")
            log(f"  {scenario} {name}: not run: {run}")
            return None
        if run.proc:
            self.commands.setdefault(f"proxy {name}", " ".join(run.proc.cmd))
        return run

    def pids(self, run: Running) -> tuple[int, ...]:
        origin = self.get_origin()
        return tuple(p.pid for p in origin.procs) + ((run.proc.pid,) if run.proc else ())

    def quiet(self, run: Running) -> OtherLoad:
        """Wait for the machine to calm down, then start measuring others' load."""
        wait_quiet(self.pids(run), max_wait=self.s.quiet_wait)
        return OtherLoad(*self.pids(run))

    def target(self, run: Running, path: str) -> tuple[str, str | None, str | None]:
        """(URL wrk connects to, absolute-form target or None, Host or None)."""
        origin = self.get_origin()
        if run.proc is None:
            return origin.url(path), None, None
        return f"http://127.0.0.1:{run.port}/", origin.url(path), f"127.0.0.1:{origin.http_port}"

    def client_cmd(self, kind: str, run: Running, n: int, *extra: str) -> list[str]:
        origin = self.get_origin()
        if run.proc is None:
            port, target = origin.http_port, "/small"
        else:
            port, target = run.port, origin.url("/small")
        return [
            *taskset(LOAD_CPU),
            sys.executable,
            "-m",
            "bench.clients",
            kind,
            "--port",
            str(port),
            "--target",
            target,
            "--host",
            f"127.0.0.1:{origin.http_port}",
            "-n",
            str(n),
            *extra,
        ]

    def seq(self, run: Running, n: int, warmup: int, record: bool = True) -> dict[str, float]:
        cmd = self.client_cmd("seq", run, n, "--warmup", str(warmup))
        r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=180)
        if r.returncode != 0:
            raise RuntimeError(f"seq client: {(r.stderr or r.stdout).strip()[-300:]}")
        if record:
            self.commands.setdefault(
                f"f seq client {'direct' if run.proc is None else 'via proxy'}", " ".join(cmd)
            )
        return json.loads(r.stdout.strip().splitlines()[-1])

    def close(self) -> None:
        if self.origin:
            self.origin.stop()
