"""Bodies through the proxy arrive byte-identical, whatever the client.

Four real clients (curl, aiohttp, httpx, requests) x sizes 0 B, 1 MiB,
1 GiB x Content-Length and chunked framing x download and upload. The 1 GiB
cases are the proof that streaming works end to end; the memory side of it
is measured in bench/stream_bench.py, not asserted here.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import httpx
import pytest
import requests

from tests.support.proxyproc import ProxyProcess
from tests.support.upstreams import Upstreams, pattern_chunks, pattern_sha256

GIB = 1024**3
SIZES = [0, 1024**2, GIB]
CLIENTS = ["curl", "aiohttp", "httpx", "requests"]
_sha_cache: dict[int, str] = {}


def expected_sha(size: int) -> str:
    if size not in _sha_cache:
        _sha_cache[size] = pattern_sha256(size)
    return _sha_cache[size]


@pytest.fixture(scope="module")
def upload_files(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    d = tmp_path_factory.mktemp("uploads")
    files = {}
    for size in SIZES:
        path = d / f"body-{size}"
        with path.open("wb") as f:
            for c in pattern_chunks(size, 4 * 1024 * 1024):
                f.write(c)
        files[size] = path
    return files


def _file_chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as f:
        while c := f.read(1024 * 1024):
            yield c


async def _afile_chunks(path: Path) -> AsyncIterator[bytes]:
    for c in _file_chunks(path):
        yield c


# -- downloads ----------------------------------------------------------------
def download(client: str, url: str, proxy: str) -> tuple[int, str]:
    if client == "curl":
        out = subprocess.run(
            ["curl", "-sS", "--fail", "-x", proxy, url, "-o", "-"],
            capture_output=True, check=True, timeout=300,
        )  # fmt: skip
        return len(out.stdout), hashlib.sha256(out.stdout).hexdigest()
    h = hashlib.sha256()
    size = 0
    if client == "requests":
        with requests.get(url, proxies={"http": proxy}, stream=True, timeout=60) as r:
            r.raise_for_status()
            for c in r.iter_content(1024 * 1024):
                h.update(c)
                size += len(c)
    elif client == "httpx":
        with httpx.Client(proxy=proxy, timeout=60) as c, c.stream("GET", url) as r:
            r.raise_for_status()
            for chunk in r.iter_raw(1024 * 1024):
                h.update(chunk)
                size += len(chunk)
    else:

        async def run() -> int:
            n = 0
            async with (
                aiohttp.ClientSession(auto_decompress=False) as s,
                s.get(url, proxy=proxy) as r,
            ):
                r.raise_for_status()
                async for chunk in r.content.iter_chunked(1024 * 1024):
                    h.update(chunk)
                    n += len(chunk)
            return n

        size = asyncio.run(run())
    return size, h.hexdigest()


@pytest.mark.parametrize("size", SIZES, ids=["0B", "1MiB", "1GiB"])
@pytest.mark.parametrize("framing", ["bytes", "chunked"])
@pytest.mark.parametrize("client", CLIENTS)
def test_download(
    client: str, framing: str, size: int, proxy: ProxyProcess, upstreams: Upstreams
) -> None:
    got_size, got_sha = download(client, f"{upstreams.url}/{framing}/{size}", proxy.url)
    assert got_size == size
    assert got_sha == expected_sha(size)


# -- uploads --------------------------------------------------------------------
def upload(client: str, url: str, proxy: str, path: Path, chunked: bool) -> dict[str, object]:
    size = path.stat().st_size
    if client == "curl":
        # curl 7.88 never sends the last chunk for an empty -T file, so the
        # empty body goes as --data-binary (same framing on the wire).
        source = ["-T", str(path)] if size else ["--data-binary", f"@{path}"]
        cmd = ["curl", "-sS", "--fail", "-x", proxy, "-X", "POST", *source, url]
        if chunked:
            cmd[-1:-1] = ["-H", "Transfer-Encoding: chunked"]
        out = subprocess.run(cmd, capture_output=True, check=True, timeout=300)
        result: dict[str, object] = json.loads(out.stdout)
        return result
    if client == "requests":
        data: object = _file_chunks(path) if chunked else path.open("rb")
        r = requests.post(url, data=data, proxies={"http": proxy}, timeout=120)
        r.raise_for_status()
        return dict(r.json())
    if client == "httpx":
        headers = {} if chunked else {"Content-Length": str(size)}
        with httpx.Client(proxy=proxy, timeout=120) as c:
            r = c.post(url, content=_file_chunks(path), headers=headers)
            r.raise_for_status()
            return dict(r.json())

    async def run() -> dict[str, object]:
        async with aiohttp.ClientSession() as s:
            body: object = _afile_chunks(path) if chunked else path.open("rb")
            async with s.post(url, data=body, proxy=proxy) as r:
                r.raise_for_status()
                return dict(await r.json())

    return asyncio.run(run())


@pytest.mark.parametrize("size", SIZES, ids=["0B", "1MiB", "1GiB"])
@pytest.mark.parametrize("framing", ["length", "chunked"])
@pytest.mark.parametrize("client", CLIENTS)
def test_upload(
    client: str,
    framing: str,
    size: int,
    proxy: ProxyProcess,
    upstreams: Upstreams,
    upload_files: dict[int, Path],
) -> None:
    result = upload(
        client, f"{upstreams.url}/upload", proxy.url, upload_files[size], framing == "chunked"
    )
    assert result["size"] == size
    assert result["sha256"] == expected_sha(size)
