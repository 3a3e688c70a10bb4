"""One reader per viewer: a browser never gets another reader's case, even with one place.

A real ``mskwb serve --archive --max-readers 1`` serves a real radiograph (NEMA WG04 hip CR)
to two real headless Chromium instances over the DevTools protocol: the second gets the
front's "all in use" page until the first leaves, and then a viewer of its own with an empty
case. The single-reader guard that every viewer process keeps as a safety net also runs on a
real aiohttp server on loopback with real WebSockets.
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
from viewer_server import ViewerServer, exists_in_process_table, running_server

from MSKPriorsLib.archive import LocalArchive
from mskworkbench.local_orthanc import free_loopback_port
from mskworkbench.web.single_reader import READER_COOKIE, SingleReader

PATIENT_ID = "10RG2"
ARTIFACTS = Path(__file__).parent / "artifacts"

FULL = "document.querySelector('#viewer-full')"
SEARCH_BUTTON = "document.querySelector('#search-button')"


@pytest.fixture
def one_place_server(shared_data: Path, tmp_path: Path) -> Iterator[ViewerServer]:
    """``mskwb serve --archive --max-readers 1`` with one real CR study archived."""
    archive_dir = tmp_path / "archive"
    archive = LocalArchive(archive_dir)
    archive.store_file(shared_data / "wg04" / "RG2_JPLL.dcm")
    archive.close()
    with running_server(
        ["--archive", str(archive_dir)],
        free_loopback_port(),
        tmp_path / "work",
        extra_args=["--max-readers", "1"],
    ) as server:
        yield server


def _browser() -> Browser:
    try:
        return Browser(width_px=1280, height_px=800)
    except BrowserError as error:
        pytest.fail(f"{error} (the browser tests need Chromium; .ci/setup installs it)")


def _open_the_study(page: Browser) -> None:
    page.wait_for(f"{SEARCH_BUTTON} !== null", 120)
    page.evaluate(
        "(() => { const f = document.querySelector('#search-text');"
        f" f.value = '{PATIENT_ID}'; f.dispatchEvent(new Event('input')); }})()"
    )
    page.wait_for(f"window.trame.state.get('search_text') === '{PATIENT_ID}'", 30)
    page.evaluate(f"{SEARCH_BUTTON}.click()")
    page.wait_for("document.querySelectorAll('.study-item').length === 1", 60)
    page.evaluate("document.querySelector('.study-item').click()")
    page.wait_for("document.querySelector('#current-study') !== null", 120)


def _current_study_text(page: Browser) -> str:
    return str(page.evaluate("document.querySelector('#current-study').textContent"))


@pytest.mark.browser
@pytest.mark.slow
def test_with_one_place_a_second_reader_gets_the_all_in_use_page_until_the_first_leaves(
    one_place_server: ViewerServer,
) -> None:
    viewer_url = one_place_server.url
    first = _browser()
    second = _browser()
    try:
        first.navigate(viewer_url)
        _open_the_study(first)
        (first_viewer,) = one_place_server.viewer_pids()
        assert PATIENT_ID in _current_study_text(first)

        second.navigate(viewer_url)
        message = second.wait_for(f"{FULL} && {FULL}.textContent", 30)
        second.screenshot(ARTIFACTS / "readers_all_in_use.png")
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

        assert "All readers' places of this viewer are in use" in message
        assert "--max-readers" in message
        assert PATIENT_ID not in second_text
        assert not second_has_app
        assert stranger.status_code == 503 and "viewer-full" in stranger.text
        assert stranger_socket.status_code == 503
        assert PATIENT_ID in first_still_open
        assert first_state == PATIENT_ID
        assert one_place_server.viewer_pids() == [first_viewer]

        first.close()
        # Once the first reader's viewer is stopped, the next reader gets a new, empty one.
        deadline = time.monotonic() + 60
        while True:
            second.navigate(viewer_url)
            try:
                second.wait_for(f"{SEARCH_BUTTON} !== null || {FULL} !== null", 60)
            except TimeoutError:
                pytest.fail("the second page showed neither the viewer nor the all-in-use page")
            if second.evaluate(f"{SEARCH_BUTTON} !== null"):
                break
            if time.monotonic() > deadline:
                pytest.fail("the place stayed taken 60 s after the first reader left")
            time.sleep(2.0)
        second.wait_for("window.trame && window.trame.state.get('status_message')", 30)
        taken_over = second.evaluate(
            "({study: window.trame.state.get('current_study'),"
            " studies: window.trame.state.get('studies').length,"
            " landmarks: window.trame.state.get('landmarks').length,"
            " shown: document.querySelector('#current-study') !== null,"
            " text: document.body.innerText})"
        )

        assert not exists_in_process_table(first_viewer)
        assert len(one_place_server.viewer_pids()) == 1
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


def test_a_dedicated_viewer_serves_its_reader_only_and_never_ends_the_session() -> None:
    ended: list[str] = []

    async def end_session() -> None:
        ended.append("cleared")

    async def scenario() -> None:
        readers = SingleReader(end_session)
        readers.dedicate("the-reader")
        async with (
            TestClient(
                TestServer(_reader_app(readers), host="127.0.0.1"),
                cookies={READER_COOKIE: "the-reader"},
            ) as reader,
            ClientSession(
                base_url=str(reader.make_url("/")), cookies={READER_COOKIE: "someone-else"}
            ) as other,
            ClientSession(base_url=str(reader.make_url("/"))) as anonymous,
        ):
            socket = await reader.ws_connect("/ws")
            await socket.close()
            await asyncio.sleep(0.1)
            again = await reader.get("/")  # a reload after the last socket closed
            refused = await other.get("/")
            refused_socket = await other.get("/ws", headers={"Upgrade": "websocket"})
            no_cookie = await anonymous.get("/")

            assert again.status == 200 and await again.text() == "viewer page"
            assert refused.status == 503 and "in use by another reader" in await refused.text()
            assert refused_socket.status == 503
            assert no_cookie.status == 503
            assert ended == []

    asyncio.run(scenario())
