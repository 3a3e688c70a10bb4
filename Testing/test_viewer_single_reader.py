"""One reader per viewer: a second browser gets the "in use" page and none of the open case.

A real ``mskwb serve --archive`` serves a real radiograph (NEMA WG04 hip CR) to two real
headless Chromium pages over the DevTools protocol. The admission rules themselves also run
on a real aiohttp server on loopback with real WebSockets.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from aiohttp import ClientSession, WSMsgType, web
from aiohttp.test_utils import TestClient, TestServer
from browser_driver import Browser, BrowserError
from viewer_server import running_viewer

from MSKPriorsLib.archive import LocalArchive
from mskworkbench.local_orthanc import free_loopback_port
from mskworkbench.web.single_reader import READER_COOKIE, SingleReader

PATIENT_ID = "10RG2"

IN_USE = "document.querySelector('#viewer-in-use')"
SEARCH_BUTTON = "document.querySelector('#search-button')"


@pytest.fixture
def viewer_url(shared_data: Path, tmp_path: Path) -> Iterator[str]:
    """``mskwb serve --archive`` on a free loopback port, with one real CR study archived."""
    archive_dir = tmp_path / "archive"
    archive = LocalArchive(archive_dir)
    archive.store_file(shared_data / "wg04" / "RG2_JPLL.dcm")
    archive.close()
    with running_viewer(
        ["--archive", str(archive_dir)], free_loopback_port(), tmp_path / "work"
    ) as url:
        yield url


def _browser() -> Browser:
    try:
        return Browser(width_px=1280, height_px=800)
    except BrowserError as error:
        pytest.fail(f"{error} (the browser tests need Chromium; .ci/setup installs it)")


def _open_the_study(page: Browser) -> None:
    page.wait_for(f"{SEARCH_BUTTON} !== null", 60)
    page.evaluate(
        "(() => { const f = document.querySelector('#search-text');"
        f" f.value = '{PATIENT_ID}'; f.dispatchEvent(new Event('input')); }})()"
    )
    page.evaluate(f"{SEARCH_BUTTON}.click()")
    page.wait_for("document.querySelectorAll('.study-item').length === 1", 60)
    page.evaluate("document.querySelector('.study-item').click()")
    page.wait_for("document.querySelector('#current-study') !== null", 120)


def _current_study_text(page: Browser) -> str:
    return str(page.evaluate("document.querySelector('#current-study').textContent"))


@pytest.mark.browser
def test_a_second_reader_gets_the_in_use_page_until_the_first_leaves(viewer_url: str) -> None:
    first = _browser()
    second = _browser()
    try:
        first.navigate(viewer_url)
        _open_the_study(first)
        assert PATIENT_ID in _current_study_text(first)

        second.navigate(viewer_url)
        message = second.wait_for(f"{IN_USE} && {IN_USE}.textContent", 30)
        second_text = second.evaluate("document.body.innerText")
        second_has_app = second.evaluate(f"{SEARCH_BUTTON} !== null || !!window.trame")
        # A client without the reader's cookie is refused too, WebSocket included.
        stranger = requests.get(viewer_url, timeout=10)
        stranger_socket = requests.get(
            viewer_url + "ws",
            headers={
                "Connection": "Upgrade",
                "Upgrade": "websocket",
                "Sec-WebSocket-Version": "13",
                "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
            },
            timeout=10,
        )
        # The first reader's page and case are untouched by the second visit.
        time.sleep(1.0)
        first_still_open = _current_study_text(first)
        first_state = first.evaluate("window.trame.state.get('current_study').patient_id")

        assert "in use by another reader" in message
        assert "mskwb serve --port" in message
        assert PATIENT_ID not in second_text
        assert not second_has_app
        assert stranger.status_code == 503 and "viewer-in-use" in stranger.text
        assert stranger_socket.status_code == 503
        assert PATIENT_ID in first_still_open
        assert first_state == PATIENT_ID

        first.close()
        # The next reader takes over with an empty case, not the previous reader's patient.
        deadline = time.monotonic() + 30
        while True:
            second.navigate(viewer_url)
            try:
                second.wait_for(f"{SEARCH_BUTTON} !== null || {IN_USE} !== null", 30)
            except TimeoutError:
                pytest.fail("the second page showed neither the viewer nor the in-use page")
            if second.evaluate(f"{SEARCH_BUTTON} !== null"):
                break
            if time.monotonic() > deadline:
                pytest.fail("the viewer stayed in use 30 s after the first reader left")
            time.sleep(1.0)
        second.wait_for("window.trame && window.trame.state.get('status_message')", 30)
        taken_over = second.evaluate(
            "({study: window.trame.state.get('current_study'),"
            " studies: window.trame.state.get('studies').length,"
            " landmarks: window.trame.state.get('landmarks').length,"
            " shown: document.querySelector('#current-study') !== null,"
            " text: document.body.innerText})"
        )

        assert taken_over["study"] is None
        assert taken_over["studies"] == 0
        assert taken_over["landmarks"] == 0
        assert not taken_over["shown"]
        assert PATIENT_ID not in taken_over["text"]
        assert "in use" not in taken_over["text"]
    finally:
        first.close()
        second.close()


async def _echo_socket(request: web.Request) -> web.WebSocketResponse:
    socket = web.WebSocketResponse()
    await socket.prepare(request)
    async for message in socket:
        if message.type == WSMsgType.TEXT:
            await socket.send_str(message.data)
    return socket


async def _page(_request: web.Request) -> web.Response:
    return web.Response(text="viewer page")


def _reader_app(readers: SingleReader) -> web.Application:
    app = web.Application()
    app.router.add_get("/", _page)
    app.router.add_get("/ws", _echo_socket)
    readers.install(app)
    return app


def test_the_reader_keeps_the_viewer_across_its_sockets_and_the_session_ends_with_the_last() -> (
    None
):
    ended: list[str] = []

    async def end_session() -> None:
        await asyncio.sleep(0.2)
        ended.append("cleared")

    async def scenario() -> None:
        readers = SingleReader(end_session)
        async with (
            TestClient(TestServer(_reader_app(readers), host="127.0.0.1")) as reader,
            ClientSession(base_url=str(reader.make_url("/"))) as other,
        ):
            page = await reader.get("/")
            assert page.status == 200 and READER_COOKIE in page.cookies
            first_socket = await reader.ws_connect("/ws")
            second_socket = await reader.ws_connect("/ws")  # another tab or a reload
            again = await reader.get("/")
            refused_page = await other.get("/")
            refused_socket = await other.get("/ws", headers={"Upgrade": "websocket"})
            await first_socket.send_str("ping")
            echoed = await first_socket.receive_str()
            await first_socket.close()
            await asyncio.sleep(0.05)
            still_held = readers.holder is not None and not ended
            await second_socket.close()
            # The next reader waits for the previous case to be cleared, then gets in.
            taken_over = await other.get("/")

            assert again.status == 200
            assert refused_page.status == 503
            assert "in use by another reader" in await refused_page.text()
            assert refused_socket.status == 503
            assert echoed == "ping"
            assert still_held
            assert ended == ["cleared"]
            assert taken_over.status == 200

    asyncio.run(scenario())


def test_nobody_is_admitted_when_the_previous_case_could_not_be_cleared() -> None:
    async def end_session() -> None:
        raise RuntimeError("scene busy")

    async def scenario() -> None:
        readers = SingleReader(end_session)
        async with TestClient(TestServer(_reader_app(readers), host="127.0.0.1")) as reader:
            socket = await reader.ws_connect("/ws")
            await socket.close()
            await asyncio.sleep(0.1)
            after_failure = await reader.get("/")
            other_socket = await reader.get("/ws", headers={"Upgrade": "websocket"})

            assert after_failure.status == 503
            assert "restart" in await after_failure.text()
            assert other_socket.status == 503

    asyncio.run(scenario())
