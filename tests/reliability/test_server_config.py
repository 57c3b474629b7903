"""The hardened settings in .streamlit/config.toml are set, and a running server obeys them.

The server runs a small probe script (from the repository root, so the repository's config
applies) that renders a line, holds a bare expression and then raises.
"""

from __future__ import annotations

import http.client
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import streamlit as st
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from websockets.sync.client import ClientConnection, connect

from imaging import Limits
from tests.e2e.conftest import REPO, running_app

CONFIG = REPO / ".streamlit" / "config.toml"
EXPECTED = {
    "global.developmentMode": False,
    "logger.level": "info",
    "client.showErrorDetails": "none",
    "client.showErrorLinks": False,
    "client.toolbarMode": "minimal",
    "runner.magicEnabled": False,
    "server.headless": True,
    "server.fileWatcherType": "none",
    "server.runOnSave": False,
    "server.maxUploadSize": 64,
    "server.enableXsrfProtection": True,
    "server.xsrfCookieSameSite": "lax",
    "server.enableCORS": True,
    "server.enableStaticServing": False,
    "server.enableAgentApi": False,
    "server.enableWebsocketCompression": False,
    "browser.gatherUsageStats": False,
}
PROBE_SCRIPT = """import streamlit as st

st.markdown("probe-page-ready")
"probe-" + "magic-marker"
raise RuntimeError("probe-exception-detail")
"""
STATIC_MARKER = "probe-static-file"
XSRF_COOKIE = "_streamlit_xsrf"
MIB = 2**20


@dataclass(frozen=True)
class Probe:
    """A running probe server, one live browser-less session on it, and what it was sent."""

    url: str
    output: Path
    xsrf: str
    session_id: str
    deltas: str

    def request(
        self,
        method: str,
        path: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
    ) -> tuple[http.client.HTTPResponse, bytes]:
        """One HTTP request; the response and its body."""
        connection = http.client.HTTPConnection(urlsplit(self.url).netloc, timeout=30)
        connection.request(method, path, body=body, headers=dict(headers or {}))
        response = connection.getresponse()
        return response, response.read()

    def upload(self, declared_length: int, body: bytes = b"", *, token: bool = True) -> int:
        """PUT a file to the upload endpoint; the status. ``declared_length`` is sent as is."""
        connection = http.client.HTTPConnection(urlsplit(self.url).netloc, timeout=30)
        connection.putrequest("PUT", f"/_stcore/upload_file/{self.session_id}/probe-file")
        connection.putheader("Content-Type", "multipart/form-data; boundary=probe")
        connection.putheader("Content-Length", str(declared_length))
        if token:
            connection.putheader("X-Xsrftoken", self.xsrf)
            connection.putheader("Cookie", f"{XSRF_COOKIE}={self.xsrf}")
        connection.endheaders(body or None)
        return connection.getresponse().status


def _run_once(socket: ClientConnection) -> tuple[str, str]:
    """Ask for a script run; the session ID and every delta sent until the run finished."""
    rerun = BackMsg()
    rerun.rerun_script.query_string = ""
    socket.send(rerun.SerializeToString())
    session_id, deltas = "", []
    while True:
        message = ForwardMsg.FromString(socket.recv(timeout=60))
        kind = message.WhichOneof("type")
        if kind == "new_session":
            session_id = message.new_session.initialize.session_id
        elif kind == "delta":
            deltas.append(str(message.delta))
        elif kind == "script_finished":
            return session_id, "\n".join(deltas)


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Probe]:
    """The probe server with one connected session that has run the script once."""
    folder = tmp_path_factory.mktemp("probe")
    (folder / "probe.py").write_text(PROBE_SCRIPT)
    (folder / "static").mkdir()
    (folder / "static" / "probe.txt").write_text(STATIC_MARKER)
    output = folder / "server.log"
    with running_app(script=folder / "probe.py", output=output) as url:
        health = http.client.HTTPConnection(urlsplit(url).netloc, timeout=30)
        health.request("GET", "/_stcore/health")
        cookie = health.getresponse().getheader("Set-Cookie", "")
        xsrf = cookie.partition(";")[0].partition("=")[2]
        ws_url = url.replace("http", "ws", 1) + "/_stcore/stream"
        with connect(
            ws_url,
            subprotocols=["streamlit", xsrf],
            origin=url,
            additional_headers={"Cookie": f"{XSRF_COOKIE}={xsrf}"},
        ) as socket:
            session_id, deltas = _run_once(socket)
            yield Probe(url, output, xsrf, session_id, deltas)


def test_security_settings_are_pinned() -> None:
    config = tomllib.loads(CONFIG.read_text(encoding="utf-8"))
    pinned = {
        f"{section}.{option}": value
        for section, options in config.items()
        for option, value in options.items()
    }
    assert {key: pinned.get(key) for key in EXPECTED} == EXPECTED


def test_every_setting_is_a_streamlit_option() -> None:
    """A misspelt option is silently ignored by Streamlit; here it fails."""
    config = tomllib.loads(CONFIG.read_text(encoding="utf-8"))
    for section, options in config.items():
        for option in options:
            st.get_option(f"{section}.{option}")  # raises for an unknown option


def test_server_upload_limit_is_the_readers_byte_limit() -> None:
    assert EXPECTED["server.maxUploadSize"] * MIB == Limits().max_bytes


def test_health_answers_and_sets_a_same_site_xsrf_cookie(probe: Probe) -> None:
    response, body = probe.request("GET", "/_stcore/health")
    assert (response.status, body) == (200, b"ok")
    cookie = response.getheader("Set-Cookie", "")
    assert cookie.startswith(f"{XSRF_COOKIE}=") and "SameSite=Lax" in cookie


def test_a_foreign_origin_gets_no_cors_grant(probe: Probe) -> None:
    response, _ = probe.request(
        "GET", "/_stcore/health", headers={"Origin": "https://evil.example"}
    )
    assert response.status == 200
    assert response.getheader("Access-Control-Allow-Origin") is None


def test_uploads_need_the_xsrf_token_and_stay_under_the_size_limit(probe: Probe) -> None:
    part = (
        b'--probe\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n'
        b"Content-Type: image/png\r\n\r\nprobe\r\n--probe--\r\n"
    )
    assert probe.upload(len(part), part) == 204  # the session and token are good
    assert probe.upload(len(part), part, token=False) == 403
    too_large = (EXPECTED["server.maxUploadSize"] + 2) * MIB
    assert probe.upload(too_large) == 413  # refused on the declared length, before any body


def test_exceptions_reach_the_log_but_not_the_browser(probe: Probe) -> None:
    assert "probe-page-ready" in probe.deltas and "exception {" in probe.deltas
    assert "probe-exception-detail" not in probe.deltas
    assert "RuntimeError" not in probe.deltas and "stack_trace" not in probe.deltas
    assert "probe-exception-detail" in probe.output.read_text(errors="replace")


def test_bare_expressions_are_not_rendered(probe: Probe) -> None:
    assert "probe-page-ready" in probe.deltas
    assert "magic-marker" not in probe.deltas


def test_no_static_files_and_no_agent_api(probe: Probe) -> None:
    _, static = probe.request("GET", "/app/static/probe.txt")
    assert STATIC_MARKER.encode() not in static
    agent, _ = probe.request(
        "POST", "/_stcore/agent/interact", body=b"{}", headers={"Content-Type": "application/json"}
    )
    assert agent.status == 403
