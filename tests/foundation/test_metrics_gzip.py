"""/metrics in gzip, as Prometheus asks for it: one gzip member made of the exposition's pieces, each compressed
once (exposition/encoding.py).

A real `threenines serve` with more ports than one piece holds, read by the clients that scrape it — Python's gzip,
curl (libcurl, as Zabbix's HTTP agent) and a real Prometheus — each must read the whole exposition.
"""

from __future__ import annotations

import gzip
import re
import shutil
import subprocess
import urllib.request
import zlib

import pytest
import yaml

from tests.foundation.exporter_process import inventory_text, serve
from tests.promdata import PROMETHEUS
from tests.support import free_port, running, wait_until
from threenines.exposition.contract import PIECE_SLOTS

PORTS = PIECE_SLOTS + 88  # more than one piece in every per-port family


def get(port: int, accept: str | None) -> tuple[dict[str, str], bytes]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics",
                                     headers={"Accept-Encoding": accept} if accept else {})
    with urllib.request.urlopen(request, timeout=10) as reply:
        return {k.lower(): v for k, v in reply.headers.items()}, reply.read()


def one_member(body: bytes) -> bytes:
    reader = zlib.decompressobj(31)
    text = reader.decompress(body)
    assert reader.eof and not reader.unused_data, "not exactly one gzip member"
    return text


def series(text: bytes) -> set[str]:
    """The series (name and labels) in an exposition: values change between two scrapes, series do not."""
    return {line.rpartition(" ")[0] for line in text.decode().splitlines() if line and not line.startswith("#")}


@pytest.fixture(scope="module")
def exporter(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("gzip")
    ports = {f"p{i}": f"127.0.{60 + i // 250}.{1 + i % 250}" for i in range(PORTS)}
    config = tmp_path / "inventory.yml"
    config.write_text(inventory_text(ports, interval="5s"))
    proc, port = serve(tmp_path, config)
    with proc:
        wait_until(lambda: get(port, None)[1].count(b"threenines_probe_last_timestamp_seconds{") == PORTS, 30,
                   what=f"all {PORTS} ports probed")
        yield tmp_path, port


def test_a_client_accepting_gzip_gets_the_same_exposition_in_one_gzip_member(exporter) -> None:
    _, port = exporter
    headers, plain = get(port, None)
    assert "content-encoding" not in headers and headers["vary"] == "Accept-Encoding"
    headers, body = get(port, "gzip")
    assert headers["content-encoding"] == "gzip" and int(headers["content-length"]) == len(body)
    text = one_member(body)
    assert series(text) == series(plain)
    assert len(body) * 5 < len(text)  # what it is for: the bytes on the wire
    # q=0 refuses gzip (RFC 9110 §12.5.3), whatever else is listed
    headers, body = get(port, "gzip;q=0, identity")
    assert "content-encoding" not in headers and series(body) == series(plain)
    headers, body = get(port, "br, *;q=0.5")
    assert headers["content-encoding"] == "gzip" and series(gzip.decompress(body)) == series(plain)


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is installed by `make system-deps`")
def test_curl_reads_every_member(exporter) -> None:
    _, port = exporter
    _, plain = get(port, None)
    done = subprocess.run(["curl", "-sS", "--compressed", "-D", "-", f"http://127.0.0.1:{port}/metrics"],
                          capture_output=True, timeout=30, check=True)
    head, _, text = done.stdout.partition(b"\r\n\r\n")
    assert b"Content-Encoding: gzip" in head
    assert series(text) == series(plain)


def test_prometheus_scrapes_the_gzip_exposition_whole(exporter) -> None:
    tmp_path, port = exporter
    prom_port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
        "scrape_configs": [{"job_name": "threenines", "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}]}))
    argv = [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prom_port}"]
    _, plain = get(port, None)
    expected = len(series(plain))

    def scraped() -> float:
        url = (f"http://127.0.0.1:{prom_port}/api/v1/query?query="
               "scrape_samples_scraped%7Bjob%3D%22threenines%22%7D")
        with urllib.request.urlopen(url, timeout=5) as reply:
            found = re.search(rb'"value":\[[0-9.]+,"([0-9]+)"\]', reply.read())
        return float(found.group(1)) if found else 0.0

    with running(argv, tmp_path / "prometheus.log", f"http://127.0.0.1:{prom_port}/-/ready"):
        wait_until(lambda: scraped() > 0, 30, what="Prometheus' first scrape")
        # Every sample of every member: the few series that come and go (a probe's RTT before its answer) aside.
        assert abs(scraped() - expected) <= 5, (scraped(), expected)


def test_a_large_uncompressed_exposition_is_gathered_whole() -> None:
    """Above the join threshold the parts go out by sendmsg, up to IOV_MAX at a time, resumed after partial
    sends (a socket buffer far smaller than the body forces them)."""
    import socket
    import threading

    from threenines.serve import httpserver

    parts = [bytes([i % 251]) * (1 + i * 7 % 9000) for i in range(3000)]  # ~13.5 MB in 3,000 parts
    assert sum(map(len, parts)) > httpserver._JOIN_BYTES and len(parts) > httpserver._IOV_MAX
    sender, receiver = socket.socketpair()
    sender.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
    received = bytearray()

    def read() -> None:
        while chunk := receiver.recv(1 << 16):
            received.extend(chunk)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        httpserver.send_parts(sender, parts)
    finally:
        sender.close()
        reader.join(timeout=30)
        receiver.close()
    assert bytes(received) == b"".join(parts)


def test_partial_sends_resume_where_the_kernel_stopped() -> None:
    """A blocking socket may take part of a sendmsg (a signal, a full buffer on a non-blocking one): the next call
    starts at the first byte not taken, inside a part or at a part's start."""
    from threenines.serve import httpserver

    class Trickle:  # takes 1,000 bytes at most per call, across the buffers it is given
        def __init__(self) -> None:
            self.taken = bytearray()
            self.calls = 0

        def sendmsg(self, buffers: list[memoryview]) -> int:
            self.calls += 1
            assert len(buffers) <= httpserver._IOV_MAX
            room = 1000
            for buffer in buffers:
                piece = bytes(buffer[:room])
                self.taken.extend(piece)
                room -= len(piece)
                if not room:
                    break
            return 1000 - room

    parts = [bytes([i % 251]) * (1 + i * 13 % 3000) for i in range(3000)]
    assert sum(map(len, parts)) > httpserver._JOIN_BYTES  # the gathering path, not one joined copy
    sock = Trickle()
    httpserver.send_parts(sock, parts)  # type: ignore[arg-type]
    assert bytes(sock.taken) == b"".join(parts)
    assert sock.calls >= sum(map(len, parts)) // 1000
