"""The proxies under test: how to install, start and identify each one.

* ``direct``: no proxy (the client talks to the origin).
* ``tapproxy``: this repo, ``python -m proxy -q -p 0 --flow-log FILE --rules FILE``:
  logging on, and ten rules loaded that match none of the benchmark's
  requests (the issue's scenario a: "rules loaded but not matching").
* ``mitmdump``: the latest mitmproxy that installs from PyPI here, in its own
  venv (``~/.cache/tapproxy-bench/mitmproxy-venv``), ``-q --set stream_large_bodies=1``.
* ``proxy.py``: PyPI ``proxy.py`` in its own venv, default settings.
* ``bare relay``: ``bench/bare_relay.py``, the ceiling for a Python proxy.
* ``tapproxy --web`` (only when named in ``--peers``): tapproxy as above with
  the web UI on and no browser connected (issue 18: the UI must add no
  measurable cost then).
* ``tapproxy uvloop`` (only when named): tapproxy as above on uvloop
  (``--loop uvloop``, ``pip install 'tapproxy[fast]'``); plain ``tapproxy``
  runs ``--loop asyncio``, what a newcomer's install runs.

The venvs are made with the newest CPython found (pyenv, /usr/bin, then this
interpreter), falling back to older ones if the install fails; delete
``~/.cache/tapproxy-bench`` to reinstall. A peer that cannot be installed or
started raises ``PeerUnavailable`` with the reason, which the report shows.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench.common import PROXY_CPU, ROOT, Launched, free_port, launch, tool_version, wait_port
from bench.origin import self_signed_ca
from bench.rules_bench import write_rules

CACHE = Path(os.environ.get("TAPPROXY_BENCH_CACHE", Path.home() / ".cache" / "tapproxy-bench"))
PEERS = ("direct", "tapproxy", "mitmdump", "proxy.py", "bare relay")
#: Peers run only when named: tapproxy with the web UI on (no browser
#: connected), and tapproxy's shell alone: ``-m tcp:ORIGIN``, a raw byte
#: relay layer with no HTTP parsing, to compare with the bare relay (issue 22
#: item 1; it needs the origin, so only scenarios that name one run it).
WEB = "tapproxy --web"
SHELL = "tapproxy tcp"
UVLOOP = "tapproxy uvloop"
EXTRA_PEERS = (WEB, SHELL, UVLOOP)
RELAY = "bare relay"


class PeerUnavailable(Exception):
    """A peer could not be installed or started; the message says why."""


@dataclass
class TlsSetup:
    """Interception settings for scenario d."""

    upstream_ca: Path  # the bench CA the proxy must trust for the origin
    workdir: Path


@dataclass
class Running:
    name: str
    proc: Launched | None  # None for direct
    port: int  # the proxy's port (0 for direct)
    client_ca: Path | None = None  # what the client must trust (interception)
    note: str = ""

    @property
    def proxy_url(self) -> str | None:
        return f"http://127.0.0.1:{self.port}" if self.proc else None

    def alive(self) -> bool:
        return self.proc is None or self.proc.alive()

    def exit_reason(self) -> str:
        if self.proc is None or self.proc.alive():
            return ""
        return f"{self.name} exited with status {self.proc.popen.returncode}"

    def stop(self) -> None:
        if self.proc:
            self.proc.stop()


# -- installing --------------------------------------------------------------------


def _interpreters() -> list[str]:
    """CPython >= 3.11 interpreters on this machine, newest first."""
    found: list[tuple[tuple[int, ...], str]] = []
    cands = [str(p) for p in (Path.home() / ".pyenv" / "versions").glob("3.*/bin/python3")]
    cands += [str(p) for p in Path("/usr/bin").glob("python3.1[0-9]")]
    cands.append(sys.executable)
    for c in dict.fromkeys(cands):
        m = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", c if "versions" in c else Path(c).name)
        if c == sys.executable:
            ver: tuple[int, ...] = sys.version_info[:3]
        elif m:
            ver = tuple(int(x) for x in m.groups() if x)
        else:
            continue
        if ver >= (3, 11) and os.access(c, os.X_OK):
            found.append((ver, c))
    found.sort(reverse=True)
    return [c for _, c in found]


def ensure_venv(name: str, package: str, exe: str) -> Path:
    """``CACHE/NAME-venv/bin/EXE``, creating the venv and installing PACKAGE if needed."""
    venv = CACHE / f"{name}-venv"
    path = venv / "bin" / exe
    if path.exists():
        return path
    CACHE.mkdir(parents=True, exist_ok=True)
    errors = []
    for py in _interpreters():
        shutil.rmtree(venv, ignore_errors=True)
        try:
            subprocess.run(
                [py, "-m", "venv", str(venv)], check=True, capture_output=True, timeout=300
            )
            r = subprocess.run(
                [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", package],
                capture_output=True,
                text=True,
                timeout=900,
            )
        except (OSError, subprocess.SubprocessError) as e:
            errors.append(f"{py}: {e}")
            continue
        if r.returncode == 0 and path.exists():
            return path
        tail = [ln for ln in r.stderr.splitlines() if "WARNING" not in ln][-3:]
        errors.append(f"{py}: pip install {package} failed: {' / '.join(tail)}")
    shutil.rmtree(venv, ignore_errors=True)
    raise PeerUnavailable("; ".join(errors) or "no Python >= 3.11 to make a venv with")


def peer_version(name: str) -> str:
    try:
        if name == "mitmdump":
            exe = ensure_venv("mitmproxy", "mitmproxy", "mitmdump")
            out = subprocess.run(
                [str(exe), "--version"], capture_output=True, text=True, timeout=60
            ).stdout
            info = dict(ln.split(":", 1) for ln in out.splitlines() if ":" in ln)
            return (
                f"mitmproxy {info.get('Mitmproxy', '?').strip()} (Python "
                f"{info.get('Python', '?').strip()}, {info.get('OpenSSL', '?').strip()})"
            )
        if name == "proxy.py":
            exe = ensure_venv("proxypy", "proxy.py", "proxy")
            py = tool_version([str(exe.parent / "python"), "--version"])
            return f"proxy.py {tool_version([str(exe), '--version'])} ({py})"
    except PeerUnavailable as e:
        return f"not installed: {e}"
    if name == "tapproxy":
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "proxy"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
        return f"git {rev or '?'}{' + uncommitted changes in proxy/' if dirty else ''}"
    return ""


# -- starting ----------------------------------------------------------------------


def _wait_log(launched: Launched, log: Path, pattern: str, timeout: float = 60.0) -> re.Match[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace") if log.exists() else ""
        m = re.search(pattern, text)
        if m:
            return m
        if not launched.alive():
            break
        time.sleep(0.05)
    launched.stop()
    tail = log.read_text(errors="replace")[-600:] if log.exists() else ""
    raise PeerUnavailable(f"did not start (status {launched.popen.poll()}): {tail.strip()}")


def _wait_file(path: Path, launched: Launched, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists() and time.monotonic() < deadline and launched.alive():
        time.sleep(0.05)
    if not path.exists():
        launched.stop()
        raise PeerUnavailable(f"no CA certificate at {path}")


def _started(name: str, launched: Launched, port: int, log: Path) -> None:
    try:
        wait_port(port, 90, launched.popen)
    except RuntimeError as e:
        launched.stop()
        tail = log.read_text(errors="replace")[-600:] if log.exists() else ""
        raise PeerUnavailable(f"{name} {e}: {tail.strip()}") from e


def _foreign_env() -> dict[str, str]:
    """The environment for a peer from its own venv: no PYTHONPATH, which could put
    this checkout's ``proxy`` package in front of proxy.py's (same name)."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}


#: How many non-matching rules tapproxy runs with (bench/rules_bench.py makes them).
BENCH_RULES = 10


def tapproxy_rules(workdir: Path) -> Path:
    """A rules file of ``BENCH_RULES`` rules that no benchmark request matches."""
    return write_rules(workdir, BENCH_RULES, matching=False)


def start_peer(
    name: str, workdir: Path, tls: TlsSetup | None = None, origin: int | None = None
) -> Running:
    """Start peer ``name`` pinned to the proxy CPU (``direct``: nothing to start);
    ``origin``: the plain HTTP origin's port, for ``SHELL``."""
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / f"{name.replace(' ', '_')}.log"
    if name == "direct":
        return Running(name, None, 0)
    if name == SHELL:
        if origin is None or tls:
            raise PeerUnavailable("a TCP relay to the plain origin only")
        cmd = [sys.executable, "-m", "proxy", "-q", "-p", "0", "-m", f"tcp:127.0.0.1:{origin}",
               "--loop", "asyncio", "--flow-log", str(workdir / "flows.jsonl")]  # fmt: skip
        p = launch(cmd, cpu=PROXY_CPU, log=log)
        m = _wait_log(p, log, r"listening at \S+:(\d+)")
        return Running(name, p, int(m.group(1)))
    if name in ("tapproxy", WEB, UVLOOP):
        if name == UVLOOP and importlib.util.find_spec("uvloop") is None:
            raise PeerUnavailable("uvloop is not installed (pip install 'tapproxy[fast]')")
        cmd = [
            sys.executable,
            "-m",
            "proxy",
            "-q",
            "-p",
            "0",
            "--flow-log",
            str(workdir / "flows.jsonl"),
            "--rules",
            str(tapproxy_rules(workdir)),
            "--loop",
            "uvloop" if name == UVLOOP else "asyncio",
        ]
        if name == WEB:
            cmd += ["--web", "--web-port", "0"]
        if tls:
            certs = workdir / "tapproxy-certs"
            cmd += ["--mitm", "--certs", str(certs), "--upstream-ca", str(tls.upstream_ca)]
        p = launch(cmd, cpu=PROXY_CPU, log=log)
        m = _wait_log(p, log, r"listening at \S+:(\d+)")
        run = Running(name, p, int(m.group(1)))
        if tls:
            run.client_ca = certs / "tapproxy-ca.pem"
            _wait_file(run.client_ca, p)
        return run
    if name == RELAY:
        p = launch(
            [sys.executable, str(ROOT / "bench" / "bare_relay.py"), "0"], cpu=PROXY_CPU, log=log
        )
        m = _wait_log(p, log, r"listening at \S+:(\d+)")
        run = Running(name, p, int(m.group(1)))
        if tls:
            run.stop()
            raise PeerUnavailable("no TLS interception (byte relay)")
        return run
    if name == "mitmdump":
        exe = ensure_venv("mitmproxy", "mitmproxy", "mitmdump")
        confdir = CACHE / "mitmproxy-conf"
        port = free_port()
        cmd = [
            str(exe),
            "-q",
            "--listen-host",
            "127.0.0.1",
            "-p",
            str(port),
            "--set",
            "stream_large_bodies=1",
            "--set",
            f"confdir={confdir}",
        ]
        if tls:
            cmd += ["--set", f"ssl_verify_upstream_trusted_ca={tls.upstream_ca}"]
        p = launch(cmd, cpu=PROXY_CPU, log=log, cwd=workdir, env=_foreign_env())
        _started(name, p, port, log)
        run = Running(name, p, port)
        if tls:
            run.client_ca = confdir / "mitmproxy-ca-cert.pem"
            _wait_file(run.client_ca, p)
        return run
    if name == "proxy.py":
        exe = ensure_venv("proxypy", "proxy.py", "proxy")
        port = free_port()
        cmd = [str(exe), "--hostname", "127.0.0.1", "--port", str(port)]
        note = ""
        if tls:
            ca = _proxypy_ca(tls.workdir / "proxypy-ca")
            certdir = workdir / "proxypy-certs"
            certdir.mkdir(exist_ok=True)
            cmd += [
                "--ca-key-file",
                str(ca["key"]),
                "--ca-cert-file",
                str(ca["cert"]),
                "--ca-signing-key-file",
                str(ca["signing"]),
                "--ca-file",
                str(tls.upstream_ca),
                "--ca-cert-dir",
                str(certdir),
            ]
            note = (
                "proxy.py ignores SNI: it mints one leaf per CONNECT host (127.0.0.1) "
                "and caches it on disk, so 'distinct SNI' reuses one leaf; the client "
                "skips the host-name check for it (chain still verified)"
            )
        p = launch(cmd, cpu=PROXY_CPU, log=log, cwd=workdir, env=_foreign_env())
        _started(name, p, port, log)
        return Running(name, p, port, ca["cert"] if tls else None, note)
    raise ValueError(f"unknown peer {name!r}")


def _proxypy_ca(directory: Path) -> dict[str, Path]:
    """An RSA CA (and leaf signing key) in the PEM files proxy.py's flags want."""

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    files = {
        "key": directory / "ca.key",
        "cert": directory / "ca.pem",
        "signing": directory / "signing.key",
    }
    if all(f.exists() for f in files.values()):
        return files
    directory.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = self_signed_ca(key, "proxy.py bench CA")
    pem, pkcs8 = serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL
    files["key"].write_bytes(key.private_bytes(pem, pkcs8, serialization.NoEncryption()))
    files["cert"].write_bytes(cert.public_bytes(pem))
    signing = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    files["signing"].write_bytes(signing.private_bytes(pem, pkcs8, serialization.NoEncryption()))
    return files


def start_or_reason(
    name: str, workdir: Path, tls: TlsSetup | None = None, origin: int | None = None
) -> Running | str:
    """``start_peer`` or the reason it could not start."""
    try:
        return start_peer(name, workdir, tls, origin)
    except PeerUnavailable as e:
        return str(e)
    except (OSError, RuntimeError, subprocess.SubprocessError) as e:
        return f"{type(e).__name__}: {e}"


def cleanup_children(runs: list[Running]) -> None:
    for r in runs:
        with contextlib.suppress(Exception):
            r.stop()
