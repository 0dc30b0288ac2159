"""tapproxy's leaf issuance per new host, timed in-process (scenario d2).

``leaf_issuance`` times ``LeafIssuer.issue`` and ``server_tls`` with the
endpoint built on it (first, second and later connections to a host, a new
host) for ``n`` hosts; ``leaf_table`` makes the Markdown table of it.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path


def leaf_issuance(n: int = 1000) -> dict[str, dict[str, float]]:
    """Microseconds per new host for tapproxy's LeafIssuer (EC leaves, the default)."""
    from proxy.tls.ca import CertificateAuthority
    from proxy.tls.endpoint import TlsEndpoint
    from proxy.tls.leaf import LeafIssuer

    out: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as d:
        ca = CertificateAuthority.load_or_create(Path(d) / "ca")
        issuer = LeafIssuer(ca, cache_size=4 * n, context_cache_size=4 * n)

        def timed(label: str, fn) -> None:  # type: ignore[no-untyped-def]
            lat = []
            for i in range(n):
                t0 = time.perf_counter_ns()
                fn(i)
                lat.append((time.perf_counter_ns() - t0) / 1000)
            lat.sort()
            out[label] = {
                "mean": statistics.fmean(lat),
                "p50": statistics.median(lat),
                "p99": lat[int(n * 0.99)],
            }

        timed("issue(new host)", lambda i: issuer.issue(f"h{i}.bench.test"))
        timed(
            "TlsEndpoint(server_tls(host issued, first connection)): shared context",
            lambda i: TlsEndpoint(issuer.server_tls(f"h{i}.bench.test")),
        )
        timed(
            "TlsEndpoint(server_tls(second connection)): its own context built",
            lambda i: TlsEndpoint(issuer.server_tls(f"h{i}.bench.test")),
        )
        timed(
            "TlsEndpoint(server_tls(later connections)): its own context cached",
            lambda i: TlsEndpoint(issuer.server_tls(f"h{i % 256}.bench.test")),
        )
        timed(
            "TlsEndpoint(server_tls(new host)): issue + endpoint",
            lambda i: TlsEndpoint(issuer.server_tls(f"g{i}.bench.test")),
        )
        issuer.close()
    return out


def leaf_table(res: dict[str, dict[str, float]], n: int) -> str:
    lines = [
        f"### d2. tapproxy leaf issuance per new host (in-process, {n} hosts, EC P-256)",
        "",
        "| operation | mean µs | p50 µs | p99 µs |",
        "| --- | ---: | ---: | ---: |",
    ]
    for label, v in res.items():
        lines.append(f"| `{label}` | {v['mean']:.0f} | {v['p50']:.0f} | {v['p99']:.0f} |")
    return "\n".join(lines) + "\n"
