"""Who may reach the viewer: loopback by default, other hosts only with a token; safe downloads.

Most of these run a real aiohttp server on loopback with the viewer's own middleware and
routes; one runs the real ``mskwb serve`` on this machine's own non-loopback address and
drives it from real Chromium.
"""

from __future__ import annotations

import asyncio
import ipaddress
import secrets
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from aiohttp import web
from browser_driver import Browser, BrowserError
from viewer_server import listening_sockets, running_server

from MSKPriorsLib.archive import LocalArchive
from mskworkbench.cli import main
from mskworkbench.local_orthanc import free_loopback_port
from mskworkbench.web.access import (
    COOKIE_NAME,
    FRONT_SECRET_HEADER,
    AccessError,
    AccessPolicy,
    install_access_control,
)
from mskworkbench.web.plan_jobs import DOWNLOAD_PREFIX, PlanJobs


def test_loopback_needs_no_flag_and_no_token() -> None:
    policy = AccessPolicy.create("127.0.0.1", allow_remote=False)

    assert policy.token == ""
    assert policy.accepts("", "")


def test_other_hosts_are_refused_without_the_explicit_flag() -> None:
    with pytest.raises(AccessError, match="--allow-remote"):
        AccessPolicy.create("0.0.0.0", allow_remote=False)


def test_remote_serving_always_gets_a_secret_token() -> None:
    policy = AccessPolicy.create("0.0.0.0", allow_remote=True)

    assert len(policy.token) >= 20
    assert not policy.accepts("", "")
    assert not policy.accepts("wrong", "")
    assert policy.accepts(policy.token, "")
    assert policy.accepts("", policy.token)


def test_serve_refuses_a_public_host_on_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(["serve", "--archive", str(tmp_path), "--host", "0.0.0.0", "--port", "0"])

    assert status == 2
    assert "--allow-remote" in capsys.readouterr().err


class _Server:
    """An aiohttp application served on a loopback port from a thread of its own."""

    def __init__(self, app: web.Application) -> None:
        self.port = free_loopback_port()
        self.loop = asyncio.new_event_loop()
        self.runner = web.AppRunner(app)
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> str:
        self.loop.run_until_complete(self.runner.setup())
        site = web.TCPSite(self.runner, "127.0.0.1", self.port)
        self.loop.run_until_complete(site.start())
        self.thread.start()
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc_info: object) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


async def _hello(_request: web.Request) -> web.Response:
    return web.Response(text="viewer page")


@pytest.fixture
def protected_url() -> Iterator[tuple[str, str]]:
    policy = AccessPolicy.create("0.0.0.0", allow_remote=True)
    app = web.Application()
    app.router.add_get("/index.html", _hello)
    install_access_control(app, policy)
    with _Server(app) as url:
        yield url, policy.token


def test_token_is_required_then_kept_in_a_cookie(protected_url: tuple[str, str]) -> None:
    url, token = protected_url
    session = requests.Session()

    refused = session.get(f"{url}/index.html", timeout=10)
    first = session.get(f"{url}/index.html", params={"token": token}, timeout=10)
    later = session.get(f"{url}/index.html", timeout=10)
    forged = requests.get(f"{url}/index.html", cookies={COOKIE_NAME: "forged"}, timeout=10)

    assert refused.status_code == 401
    assert first.status_code == 200 and first.text == "viewer page"
    assert later.status_code == 200
    assert forged.status_code == 401


def test_downloads_serve_run_files_only(tmp_path: Path) -> None:
    jobs = PlanJobs(tmp_path / "plans", on_progress=lambda *_: None)
    run_id, out_dir = jobs.new_run_folder()
    (out_dir / "report.html").write_text("<html>report</html>")
    (tmp_path / "secret.txt").write_text("not for download")
    app = web.Application()
    jobs.install_routes(app)

    with _Server(app) as url:
        good = requests.get(f"{url}{DOWNLOAD_PREFIX}/{run_id}/report.html", timeout=10)
        missing = requests.get(f"{url}{DOWNLOAD_PREFIX}/{run_id}/scene.mrb", timeout=10)
        escape = requests.get(f"{url}{DOWNLOAD_PREFIX}/..%2F..%2F/secret.txt", timeout=10)

    assert good.status_code == 200 and good.text == "<html>report</html>"
    assert "attachment" in good.headers["Content-Disposition"]
    assert missing.status_code == 404
    assert escape.status_code == 404


def _outward_address() -> str:
    """This machine's own non-loopback IPv4 address (no packet is sent to find it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("192.0.2.1", 9))
        address = str(probe.getsockname()[0])
    if ipaddress.ip_address(address).is_loopback:
        pytest.fail("this machine has no non-loopback address to test remote access on")
    return address


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def hip_archive(shared_data: Path, tmp_path: Path) -> Path:
    """An archive folder holding one real CR study."""
    archive = LocalArchive(tmp_path / "archive")
    archive.store_file(shared_data / "wg04" / "RG2_JPLL.dcm")
    archive.close()
    return tmp_path / "archive"


@pytest.mark.browser
@pytest.mark.slow
def test_the_front_refuses_remote_requests_without_the_token_and_viewers_without_its_secret(
    hip_archive: Path, tmp_path: Path
) -> None:
    host = _outward_address()
    token = secrets.token_urlsafe(24)
    with running_server(
        ["--archive", str(hip_archive)],
        _free_port(host),
        tmp_path / "work",
        extra_env={"MSKWB_SERVE_TOKEN": token},
        extra_args=["--allow-remote"],
        host=host,
        token=token,
    ) as server:
        page = requests.get(server.url, timeout=10)
        forged = requests.get(server.url, cookies={COOKIE_NAME: "forged"}, timeout=10)
        status = requests.get(server.url + "mskwb/front/status", timeout=10)
        upgrade = requests.get(
            server.url + "ws",
            headers={
                "Connection": "Upgrade",
                "Upgrade": "websocket",
                "Sec-WebSocket-Version": "13",
                "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
            },
            timeout=10,
        )
        assert [r.status_code for r in (page, forged, status, upgrade)] == [401] * 4
        assert server.viewer_pids() == [], "a refused request started a viewer"

        # With the token, a real browser gets its viewer through the front.
        try:
            browser = Browser(width_px=1280, height_px=800, reachable_hosts=(host,))
        except BrowserError as error:
            pytest.fail(f"{error} (the browser tests need Chromium; .ci/setup installs it)")
        with browser:
            browser.navigate(f"{server.url}?token={token}")
            browser.wait_for("document.querySelector('#search-button') !== null", 120)
            browser.wait_for("window.trame && window.trame.state.get('status_message')", 60)
            (viewer,) = server.viewer_pids()
            sockets = listening_sockets(viewer)
            # The viewer listens on loopback only and answers nothing without its secret.
            direct = [
                requests.get(f"http://127.0.0.1:{port}/index.html", timeout=10)
                for _, port in sockets
            ]
            wrong_secret = [
                requests.get(
                    f"http://127.0.0.1:{port}/index.html",
                    headers={FRONT_SECRET_HEADER: "guessed"},
                    timeout=10,
                )
                for _, port in sockets
            ]
            still_served = browser.evaluate("document.querySelector('#search-button') !== null")

        assert sockets and {address for address, _ in sockets} == {"0100007F"}
        assert [r.status_code for r in direct + wrong_secret] == [403] * (2 * len(sockets))
        assert still_served
