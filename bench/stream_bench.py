"""Stream a large body through tapproxy: MB/s against direct, and proxy RSS.

    python bench/stream_bench.py [--size-gib 2] [--runs 3]

Measures, in the same run: a direct download from the benchmark upstream,
the same download through tapproxy (regular mode), and the proxy's peak
RSS (VmHWM) over the whole run. The proxy is pinned to CPU 0 and the
client and upstream to CPU 1 when taskset exists. Principle 1 says memory
stays flat whatever the body size: the peak RSS must stay under 100 MB.
"""

from __future__ import annotations

import argparse
import statistics

from bench.common import curl_download, machine_line, rss_kb, start_tapproxy, start_upstream


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--size-gib", type=float, default=2.0)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    size = int(args.size_gib * 1024**3)
    upstream = start_upstream(cpu=1)
    proxy = start_tapproxy(cpu=0)
    url = f"http://127.0.0.1:{upstream.port}/bytes/{size}"
    try:
        rss_idle = rss_kb(proxy.pid)
        direct, proxied = [], []
        for _ in range(args.runs):
            n, secs = curl_download(url, None, cpu=1)
            assert n == size, f"direct download short: {n}"
            direct.append(n / secs / 1e6)
            n, secs = curl_download(url, f"http://127.0.0.1:{proxy.port}", cpu=1)
            assert n == size, f"proxied download short: {n}"
            proxied.append(n / secs / 1e6)
        peak = rss_kb(proxy.pid, "VmHWM")
    finally:
        proxy.stop()
        upstream.stop()
    d, p = statistics.median(direct), statistics.median(proxied)
    print(f"machine: {machine_line()}; proxy on CPU 0, client+upstream on CPU 1")
    print(f"body: {args.size_gib:g} GiB, Content-Length, {args.runs} runs (median, min-max)")
    print("| path | MB/s | min | max |")
    print("| --- | ---: | ---: | ---: |")
    print(f"| direct | {d:.0f} | {min(direct):.0f} | {max(direct):.0f} |")
    print(f"| tapproxy | {p:.0f} | {min(proxied):.0f} | {max(proxied):.0f} |")
    print(f"ratio tapproxy/direct: {p / d:.2f}")
    print(f"tapproxy RSS idle {rss_idle / 1024:.1f} MB, peak during transfers {peak / 1024:.1f} MB")
    ok = peak < 100 * 1024
    print("peak RSS under 100 MB: " + ("yes" if ok else "NO"))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
