"""Run the fuzz targets one after another: ``python -m tests.fuzz.run``.

    python -m tests.fuzz.run                          # every target, 10 minutes each
    python -m tests.fuzz.run --minutes 1 --target http1 --target rules
    python -m tests.fuzz.run --curate 10 --target pcap   # keep up to 10 new seeds

Each target runs with a work corpus under ``--work`` (default
/tmp/tapproxy-fuzz/<target>/corpus) listed first, so new inputs are written
there, never into the repository; the repository's seeds
(tests/fuzz/corpus/<target>) are read as well. Crash, timeout and
out-of-memory inputs go to /tmp/tapproxy-fuzz/<target>/artifacts/. Findings
already listed in tests/fuzz/known_crashes.txt are skipped, and after a new
crash the target is restarted until its time is used, so one bug does not
end the campaign. A summary (executions, exec/s, coverage, findings) is
printed and written to /tmp/tapproxy-fuzz/summary.json.

``--curate N`` does not fuzz: it merges the work corpus with the seeds
(libFuzzer ``-merge=1``) and copies the N inputs that add the most coverage
features to the seeds' into tests/fuzz/corpus/<target>/fuzz-<sha1>.bin (http1: only messages the
parser accepts whole, as valid-fuzz-<sha1>.bin, which test_http1_corpus.py
requires of that folder).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tests.fuzz._harness import CORPUS_ROOT, DICT_ROOT, FUZZ_DIR, REPO

TARGETS = ("http1", "rules", "clienthello", "pcap", "tls", "grpc")
DEFAULT_WORK = Path(tempfile.gettempdir()) / "tapproxy-fuzz"
MAX_RESTARTS = 20
_STAT = re.compile(r"^stat::(\w+):\s*(\d+)", re.M)
_COV = re.compile(r"cov: (\d+) ft: (\d+) corp: (\d+)/(\S+)")
_ARTIFACT = re.compile(r"Test unit written to (\S+)")


@dataclass
class Result:
    target: str
    seconds: float = 0.0
    executions: int = 0
    exec_per_s: float = 0.0
    cov: int = 0
    ft: int = 0
    corpus: int = 0
    new_units: int = 0
    peak_rss_mb: int = 0
    runs: int = 0
    findings: list[str] = field(default_factory=list)


def command(target: str, work: Path, seconds: int, extra: list[str]) -> list[str]:
    corpus = work / "corpus"
    artifacts = work / "artifacts"
    corpus.mkdir(parents=True, exist_ok=True)
    artifacts.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable, str(FUZZ_DIR / f"fuzz_{target}.py"), str(corpus), str(CORPUS_ROOT / target),
        f"-max_total_time={seconds}", "-timeout=10", "-rss_limit_mb=2048",
        f"-artifact_prefix={artifacts}/", "-print_final_stats=1", "-print_pcs=0",
    ]  # fmt: skip
    d = DICT_ROOT / f"{target}.dict"
    if d.exists():
        cmd.append(f"-dict={d}")
    return cmd + extra


def parse_log(text: str, result: Result) -> None:
    stats = {k: int(v) for k, v in _STAT.findall(text)}
    result.executions += stats.get("number_of_executed_units", 0)
    result.new_units += stats.get("new_units_added", 0)
    result.peak_rss_mb = max(result.peak_rss_mb, stats.get("peak_rss_mb", 0))
    cov = _COV.findall(text)
    if cov:
        c, f, n, _ = cov[-1]
        result.cov, result.ft = max(result.cov, int(c)), max(result.ft, int(f))
        result.corpus = int(n)
    result.findings += _ARTIFACT.findall(text)


def fuzz(target: str, minutes: float, root: Path, skip_known: bool, extra: list[str]) -> Result:
    work = root / target
    result = Result(target)
    budget = int(minutes * 60)
    env = dict(os.environ, FUZZ_SKIP_KNOWN="1" if skip_known else "0")
    start = time.monotonic()
    while result.runs <= MAX_RESTARTS:
        left = budget - int(time.monotonic() - start)
        if left < 5:
            break
        result.runs += 1
        log = work / f"fuzz-{result.runs}.log"
        cmd = command(target, work, left, extra)
        print(f"[{target}] run {result.runs}: {left}s, log {log}", flush=True)
        with log.open("w") as out:
            proc = subprocess.run(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, env=env)
        parse_log(log.read_text(errors="replace"), result)
        if proc.returncode == 0:
            break
        print(f"[{target}] exited {proc.returncode}; findings: {result.findings}", flush=True)
    result.seconds = round(time.monotonic() - start, 1)
    result.exec_per_s = round(result.executions / result.seconds, 1) if result.seconds else 0.0
    return result


def curate(target: str, root: Path, keep: int) -> list[Path]:
    """Copy up to ``keep`` work-corpus inputs that add the most coverage to the seeds.

    libFuzzer's merge (``-merge=1``) runs every seed and work input once and
    writes the features each one reached to its control file; from those,
    inputs are picked greedily by how many features they add to what the
    seeds and the inputs already picked reach (smaller first on ties).
    """
    seeds = CORPUS_ROOT / target
    harness_module = importlib.import_module(f"tests.fuzz.fuzz_{target}")
    name_of = getattr(harness_module, "seed_name", _seed_name)
    with tempfile.TemporaryDirectory() as tmp:
        control = Path(tmp) / "control"
        harness = str(FUZZ_DIR / f"fuzz_{target}.py")
        cmd = [
            sys.executable, harness, "-merge=1", f"-merge_control_file={control}",
            str(Path(tmp) / "out"), str(seeds), str(root / target / "corpus"),
        ]  # fmt: skip
        (Path(tmp) / "out").mkdir()
        # libFuzzer's merge re-executes the script itself (hence its shebang
        # and exec bit); known crashes among the seeds are skipped.
        env = dict(os.environ, FUZZ_SKIP_KNOWN="1")
        subprocess.run(cmd, cwd=REPO, check=True, capture_output=True, env=env)
        files, features = _control(control.read_text())
    covered: set[int] = set()
    candidates: dict[Path, set[int]] = {}
    for i, f in enumerate(files):
        if f.parent == seeds:
            covered |= features.get(i, set())
        elif i in features and name_of(f.read_bytes()) is not None:
            candidates[f] = features[i]
    out: list[Path] = []
    while candidates and len(out) < keep:
        best = max(candidates, key=lambda f: (len(candidates[f] - covered), -f.stat().st_size))
        if not candidates[best] - covered:
            break
        covered |= candidates.pop(best)
        data = best.read_bytes()
        dest = seeds / str(name_of(data))
        dest.write_bytes(data)
        out.append(dest)
    return out


def _control(text: str) -> tuple[list[Path], dict[int, set[int]]]:
    """Input files and the features of each that ran (libFuzzer's merge control file)."""
    lines = text.splitlines()
    count = int(lines[0])
    files = [Path(line).resolve() for line in lines[2 : 2 + count]]
    features: dict[int, set[int]] = {}
    for line in lines[2 + count :]:
        parts = line.split()
        if parts and parts[0] == "FT":
            features[int(parts[1])] = {int(x) for x in parts[2:]}
    return files, features


def _seed_name(data: bytes) -> str:
    return f"fuzz-{hashlib.sha1(data).hexdigest()[:12]}.bin"


def main(argv: list[str] | None = None) -> int:
    first_line = (__doc__ or "").split("\n")[0]
    ap = argparse.ArgumentParser(prog="python -m tests.fuzz.run", description=first_line)
    ap.add_argument("--target", action="append", choices=TARGETS, help="repeatable; default: all")
    ap.add_argument("--minutes", type=float, default=10.0, help="per target (default 10)")
    ap.add_argument("--work", type=Path, default=DEFAULT_WORK, help=f"default {DEFAULT_WORK}")
    ap.add_argument("--no-skip-known", action="store_true", help="stop on known crashes too")
    ap.add_argument("--curate", type=int, metavar="N", help="keep up to N new seeds; no fuzzing")
    ap.add_argument("libfuzzer", nargs="*", help="extra libFuzzer flags, after --")
    args = ap.parse_args(argv)
    targets = args.target or list(TARGETS)
    if args.curate is not None:
        for t in targets:
            for p in curate(t, args.work, args.curate):
                print(p.relative_to(REPO))
        return 0
    results = []
    for t in targets:
        r = fuzz(t, args.minutes, args.work, not args.no_skip_known, args.libfuzzer)
        results.append(r)
        print(json.dumps(asdict(r)), flush=True)
    summary = args.work / "summary.json"
    summary.write_text(json.dumps([asdict(r) for r in results], indent=2) + "\n")
    head = ("target", "seconds", "execs", "exec/s", "cov", "ft", "corpus")
    print("\n{:12} {:>8} {:>10} {:>8} {:>6} {:>6} {:>6}  findings".format(*head))
    for r in results:
        print(
            f"{r.target:12} {r.seconds:8.0f} {r.executions:10d} {r.exec_per_s:8.0f} {r.cov:6d}"
            f" {r.ft:6d} {r.corpus:6d}  {len(r.findings)}"
        )
        for f in r.findings:
            print(f"    {f}")
    print(f"summary: {summary}")
    return 1 if any(r.findings for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
