"""`threenines status` never prints a secret: not the basic-auth password it holds, not a user:password someone
put in an --exporter URL (one exporter or replicas)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler

import pytest

from tests.support import REPO, serving
from threenines.cli import main
from threenines.commands.status_sources import ExporterError, Http, fetch, shown_url

SECRET = "pw-9c4e@x"  # a raw "@" too: the userinfo ends at the authority's last one


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def _refusing_exporter() -> Iterator[int]:
    class Refuse(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="threenines"')
            self.end_headers()

        def log_message(self, *_: object) -> None:
            pass

    with serving(Refuse) as server:
        yield server.server_address[1]


def test_the_http_options_repr_holds_no_password() -> None:
    http = Http(10.0, ("noc", SECRET), True)
    assert SECRET not in repr(http) and "noc" not in repr(http)


def test_shown_url_drops_the_userinfo_only() -> None:
    assert shown_url(f"https://noc:{SECRET}@exp.example:9839/x") == "https://exp.example:9839/x"
    assert shown_url(f"a=http://noc:{SECRET}@h:1") == "a=http://h:1"
    assert shown_url("http://h:1/metrics") == "http://h:1/metrics"


def test_an_unreachable_or_refusing_exporter_is_named_without_its_userinfo() -> None:
    http = Http(5.0, None, True)
    with pytest.raises(ExporterError) as unreachable:
        fetch(f"http://noc:{SECRET}@127.0.0.1:{_closed_port()}", http)
    assert str(unreachable.value).startswith("cannot reach the exporter at http://127.0.0.1:")
    with _refusing_exporter() as port, pytest.raises(ExporterError) as refused:
        fetch(f"http://noc:{SECRET}@127.0.0.1:{port}", http)
    assert str(refused.value).startswith(f"http://127.0.0.1:{port}/metrics answered HTTP 401")
    for err in (unreachable.value, refused.value):
        assert SECRET not in str(err) and "noc" not in str(err) and SECRET not in err.why


@pytest.mark.parametrize("replicas", [False, True])
def test_status_prints_no_userinfo_of_an_exporter_url(replicas: bool, capsys: pytest.CaptureFixture[str],
                                                      tmp_path) -> None:
    with _refusing_exporter() as port:
        urls = [f"http://noc:{SECRET}@127.0.0.1:{port}", f"http://noc:{SECRET}@127.0.0.1:{_closed_port()}"]
        exporters = [f"--exporter=v{i}={u}" for i, u in enumerate(urls)] if replicas else [f"--exporter={urls[0]}"]
        for fmt in ("table", "json"):
            code = main(["status", "--config", str(REPO / "examples" / "inventory.yml"), "--timeout", "5",
                         "--format", fmt, *exporters, "--state-dir", str(tmp_path)][: None if not replicas else -2])
            out = capsys.readouterr()
            assert code == 1, out.out + out.err
            assert "127.0.0.1" in out.out + out.err  # the exporter is named ...
            assert SECRET not in out.out + out.err and "noc:" not in out.out + out.err  # ... without its userinfo
