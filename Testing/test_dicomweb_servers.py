"""Named PACS servers: configuration, secrets kept out of sight, TLS settings passed through."""

from __future__ import annotations

import json
import logging
import re
import shutil
import ssl
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from MSKPriorsLib.dicomweb import DicomWebClient, DicomWebError
from MSKPriorsLib.servers import (
    BearerAuth,
    PacsServer,
    ServerConfigError,
    load_servers,
    resolve_server,
)

PASSWORD = "s3cret-Pa55word-xyz"
TOKEN = "tok-0123456789-abcdef"


@pytest.fixture
def a_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A servers.json with a basic, a bearer and an unauthenticated server."""
    path = tmp_path / "servers.json"
    path.write_text(
        json.dumps(
            {
                "servers": [
                    {
                        "name": "hospital",
                        "url": "https://pacs.example.org/dicom-web/",
                        "auth": "basic",
                        "username": "reader",
                        "password_env": "HOSPITAL_PACS_PASSWORD",
                        "ca_bundle": "/etc/ssl/hospital-ca.pem",
                        "read_timeout_s": 30,
                    },
                    {
                        "name": "cloud",
                        "url": "https://cloud.example.org",
                        "auth": "bearer",
                        "token": TOKEN,
                    },
                    {"name": "open", "url": "http://127.0.0.1:9/dicom-web"},
                ]
            }
        )
    )
    monkeypatch.setenv("MSKWB_SERVERS", str(path))
    monkeypatch.setenv("HOSPITAL_PACS_PASSWORD", PASSWORD)
    return path


def test_servers_resolve_by_name_with_secrets_from_env_or_file(a_config: Path) -> None:
    hospital = resolve_server("hospital")
    cloud = resolve_server("cloud")

    assert hospital.url == "https://pacs.example.org/dicom-web"
    assert (hospital.auth, hospital.username, hospital.secret()) == ("basic", "reader", PASSWORD)
    assert hospital.timeout == (10.0, 30.0)
    assert (cloud.auth, cloud.secret()) == ("bearer", TOKEN)
    assert set(load_servers()) == {"hospital", "cloud", "open"}


def test_secrets_never_show_in_repr_describe_or_logs(
    a_config: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    shown = []
    for name in ("hospital", "cloud"):
        server = resolve_server(name)
        client = DicomWebClient(server, retries=0)
        shown += [repr(server), str(server), json.dumps(server.describe()), repr(client)]
        shown.append(repr(client.session.auth))
    # A failing request (nothing listens on port 9) logs and raises: no secret either way.
    with pytest.raises(DicomWebError) as raised:
        DicomWebClient(resolve_server("open"), retries=1, backoff_s=0.01).search_studies()
    shown += [str(raised.value), caplog.text]

    text = "\n".join(shown)
    assert PASSWORD not in text and TOKEN not in text
    assert "reader" in text and "<hidden>" in text


def test_the_session_sends_the_right_authorization(a_config: Path) -> None:
    basic = DicomWebClient(resolve_server("hospital")).session
    bearer = DicomWebClient(resolve_server("cloud")).session
    request = requests.Request("GET", "https://cloud.example.org/studies").prepare()

    assert isinstance(basic.auth, requests.auth.HTTPBasicAuth)
    assert (basic.auth.username, basic.auth.password) == ("reader", PASSWORD)
    assert isinstance(bearer.auth, BearerAuth)
    assert bearer.auth(request).headers["Authorization"] == f"Bearer {TOKEN}"
    assert basic.headers["Accept-Encoding"] == "identity"


def test_tls_is_verified_by_default_and_a_ca_bundle_is_passed_through(a_config: Path) -> None:
    plain = PacsServer("p", "https://pacs.example.org")
    unverified = PacsServer("u", "https://pacs.example.org", verify_tls=False)

    assert plain.verify is True
    assert DicomWebClient(plain).session.verify is True
    assert DicomWebClient(resolve_server("hospital")).session.verify == "/etc/ssl/hospital-ca.pem"
    assert DicomWebClient(unverified).session.verify is False


def test_plain_urls_take_credentials_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("MSKWB_PACS_TOKEN", raising=False)
    monkeypatch.setenv("MSKWB_PACS_USERNAME", "mskwb")
    monkeypatch.setenv("MSKWB_PACS_PASSWORD", PASSWORD)

    server = resolve_server("http://127.0.0.1:8042/dicom-web/")

    assert (server.name, server.url) == ("127.0.0.1", "http://127.0.0.1:8042/dicom-web")
    assert (server.auth, server.username, server.secret()) == ("basic", "mskwb", PASSWORD)
    assert PASSWORD not in repr(server)


def test_bad_names_and_urls_get_clear_errors(
    a_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ServerConfigError, match=r"no PACS server named 'nowhere'.*cloud, hospital"):
        resolve_server("nowhere")
    with pytest.raises(ServerConfigError, match="credentials in the URL are refused"):
        resolve_server("https://user:pw@pacs.example.org")
    with pytest.raises(ServerConfigError, match="auth must be one of"):
        PacsServer("x", "https://pacs.example.org", auth="kerberos")  # type: ignore[arg-type]
    monkeypatch.delenv("HOSPITAL_PACS_PASSWORD")
    with pytest.raises(
        ServerConfigError, match="no password found in environment variable HOSPITAL_PACS_PASSWORD"
    ):
        resolve_server("hospital").secret()


def test_a_broken_configuration_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "servers.json"
    path.write_text("{not json")

    with pytest.raises(ServerConfigError, match=re.escape(str(path))):
        load_servers(path)


@pytest.fixture
def a_tls_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A real HTTPS server on loopback with a fresh self-signed certificate (openssl CLI)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("the TLS test needs the openssl command (Debian package 'openssl')")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/dicom+json")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"[]")

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield f"https://127.0.0.1:{httpd.server_address[1]}/dicom-web", cert
    httpd.shutdown()
    httpd.server_close()


def test_a_self_signed_server_is_refused_unless_its_ca_is_given(
    a_tls_server: tuple[str, Path],
) -> None:
    url, cert = a_tls_server
    default = DicomWebClient(PacsServer("tls", url), retries=0)
    trusting = DicomWebClient(PacsServer("tls", url, ca_bundle=str(cert)), retries=0)

    with pytest.raises(DicomWebError, match="TLS certificate check failed"):
        default.search_studies()
    assert trusting.search_studies() == []
