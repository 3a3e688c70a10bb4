"""The multi-reader front's routing, relaying and process handling, with small real viewers.

The front (:mod:`mskworkbench.web.launcher`) runs in this process on a real aiohttp server on
loopback. Its viewer processes are real child processes running a small aiohttp program that
uses the viewer's own front-secret check and dedicated single-reader guard, and reports what
reached it; so routing, cookies, WebSocket relaying, idle stops and reaping are checked in
seconds, without the full trame viewer (the browser tests do that).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import requests
from aiohttp import ClientSession, CookieJar
from aiohttp.test_utils import TestServer
from viewer_server import exists_in_process_table, is_running, running_server

from MSKPriorsLib.archive import LocalArchive
from mskworkbench.local_orthanc import free_loopback_port
from mskworkbench.web.launcher import ViewerLauncher, front_application
from mskworkbench.web.single_reader import READER_COOKIE

PROJECT_ROOT = Path(__file__).resolve().parent.parent

#: A viewer stand-in: what the front must treat like the real viewer process.
SMALL_VIEWER = """
import asyncio, gzip, os, sys
from aiohttp import WSMsgType, web
from mskworkbench.web.access import AccessPolicy, install_access_control
from mskworkbench.web.launcher import READER_VARIABLE, READY_PREFIX, SECRET_VARIABLE
from mskworkbench.web.single_reader import SingleReader


async def who(request):
    response = web.json_response({"pid": os.getpid(), "cookies": dict(request.cookies),
                                  "query": dict(request.query), "work_dir": sys.argv[1]})
    response.set_cookie("set_by_viewer", str(os.getpid()))
    return response


async def packed(request):
    body = gzip.compress(b"bone " * 400_000)
    return web.Response(body=body, headers={"Content-Encoding": "gzip"})


async def echo(request):
    socket = web.WebSocketResponse(max_msg_size=0)
    await socket.prepare(request)
    async for message in socket:
        if message.type == WSMsgType.TEXT:
            await socket.send_str(message.data + f" from {os.getpid()}")
        elif message.type == WSMsgType.BINARY:
            await socket.send_bytes(message.data[::-1])
    return socket


async def nothing():
    return None


async def main():
    app = web.Application()
    install_access_control(app, AccessPolicy(front_secret=os.environ.pop(SECRET_VARIABLE)))
    guard = SingleReader(nothing)
    guard.dedicate(os.environ.pop(READER_VARIABLE))
    guard.install(app)
    app.router.add_get("/", who)
    app.router.add_get("/packed", packed)
    app.router.add_get("/ws", echo)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    print(READY_PREFIX + str(runner.addresses[0][1]), flush=True)
    await asyncio.Event().wait()


asyncio.run(main())
"""


def _launcher(tmp_path: Path, max_readers: int = 4, grace_s: float = 0.5) -> ViewerLauncher:
    script = tmp_path / "small_viewer.py"
    script.write_text(SMALL_VIEWER)
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    return ViewerLauncher(
        lambda folder: [sys.executable, str(script), str(folder)],
        tmp_path / "work",
        max_readers=max_readers,
        grace_s=grace_s,
        start_timeout_s=60,
        env=env,
    )


Scenario = Callable[[ViewerLauncher, TestServer], Awaitable[None]]


def _run(launcher: ViewerLauncher, scenario: Scenario) -> None:
    async def main() -> None:
        server = TestServer(front_application(launcher, lambda _app: None), host="127.0.0.1")
        await server.start_server()
        try:
            await scenario(launcher, server)
        finally:
            await server.close()

    asyncio.run(main())


def _reader(server: TestServer) -> ClientSession:
    """One browser: a session with a cookie jar of its own that keeps loopback cookies."""
    return ClientSession(base_url=str(server.make_url("/")), cookie_jar=CookieJar(unsafe=True))


async def _open_viewer(reader: ClientSession, path: str = "/") -> dict[str, Any]:
    """Load the page until the front stops answering "starting"; return what the viewer saw."""
    for _ in range(600):
        async with reader.get(path) as response:
            if response.content_type == "application/json":
                return dict(await response.json())
            assert response.status == 200, await response.text()
            assert "viewer-starting" in await response.text()
        await asyncio.sleep(0.1)
    raise AssertionError("the viewer did not start within 60 s")


async def _wait_until_gone(pid: int, timeout_s: float = 30.0) -> bool:
    for _ in range(int(timeout_s / 0.1)):
        if not exists_in_process_table(pid):
            return True
        await asyncio.sleep(0.1)
    return False


def test_each_reader_reaches_only_its_own_viewer_with_only_its_own_cookie(tmp_path: Path) -> None:
    async def scenario(launcher: ViewerLauncher, server: TestServer) -> None:
        async with _reader(server) as first, _reader(server) as second:
            first.cookie_jar.update_cookies({"unrelated": "kept-in-the-browser"})
            seen_first = await _open_viewer(first, "/?token=front-only&keep=1")
            seen_second = await _open_viewer(second)
            again_first = await _open_viewer(first)
            # The second viewer's own cookie never reaches the first viewer, nor the reverse.
            again_second = await _open_viewer(second)
            status = await (await first.get("/mskwb/front/status")).json()
            async with first.get("/packed") as packed:
                packed_encoding = packed.headers.get("Content-Encoding")
                packed_body = await packed.read()
            first_cookie = first.cookie_jar.filter_cookies(server.make_url("/"))[READER_COOKIE]

        assert seen_first["pid"] != seen_second["pid"]
        assert again_first["pid"] == seen_first["pid"]
        assert seen_first["cookies"] == {READER_COOKIE: first_cookie.value}
        assert set(again_second["cookies"]) == {READER_COOKIE}
        assert again_second["cookies"][READER_COOKIE] != first_cookie.value
        assert seen_first["query"] == {"keep": "1"}
        assert Path(seen_first["work_dir"]).parent == launcher.work_dir / "readers"
        assert seen_first["work_dir"] != seen_second["work_dir"]
        assert status == {"readers": 2, "max_readers": 4}
        # Compressed answers pass through as the viewer sent them (the client unpacks them).
        assert packed_encoding == "gzip" and packed_body == b"bone " * 400_000

    _run(_launcher(tmp_path, grace_s=30.0), scenario)


def test_websockets_are_relayed_and_a_left_viewer_is_stopped_and_reaped(tmp_path: Path) -> None:
    async def scenario(launcher: ViewerLauncher, server: TestServer) -> None:
        big_bytes = os.urandom(6 * 1024 * 1024)  # above aiohttp's 4 MB default message limit
        async with _reader(server) as reader:
            pid = (await _open_viewer(reader))["pid"]
            socket = await reader.ws_connect("/ws", max_msg_size=0)
            await socket.send_str("hello")
            text = await socket.receive_str()
            await socket.send_bytes(big_bytes)
            echoed = await socket.receive_bytes()
            await asyncio.sleep(1.5)  # longer than the grace: an open socket keeps the viewer
            kept_while_open = exists_in_process_table(pid)
            await socket.close()
            gone = await _wait_until_gone(pid)
            after = await reader.get("/ws")

        assert text == f"hello from {pid}"
        assert echoed == big_bytes[::-1]
        assert kept_while_open
        assert gone and launcher.children == {}
        assert after.status == 503 and "viewer-closed" in await after.text()

    _run(_launcher(tmp_path), scenario)


def test_all_places_taken_then_freed_and_no_viewer_outlives_the_front(tmp_path: Path) -> None:
    pids: list[int] = []

    async def scenario(launcher: ViewerLauncher, server: TestServer) -> None:
        async with _reader(server) as first, _reader(server) as second:
            seen = await _open_viewer(first)
            pids.append(seen["pid"])
            socket = await first.ws_connect("/ws")
            refused = await second.get("/")
            refused_text = await refused.text()
            await socket.close()
            assert await _wait_until_gone(seen["pid"])
            pids.append((await _open_viewer(second))["pid"])
            await second.ws_connect("/ws")  # left open: only the front's stop ends it

        assert refused.status == 503 and "viewer-full" in refused_text
        assert "one reader at a time" in " ".join(refused_text.split())

    _run(_launcher(tmp_path, max_readers=1), scenario)
    assert len(pids) == 2 and not any(exists_in_process_table(pid) for pid in pids)


def test_a_viewer_killed_by_a_signal_is_reported_once_then_replaced(tmp_path: Path) -> None:
    async def scenario(launcher: ViewerLauncher, server: TestServer) -> None:
        async with _reader(server) as reader:
            pid = (await _open_viewer(reader))["pid"]
            os.kill(pid, 9)
            assert await _wait_until_gone(pid)
            asset = await reader.get("/packed")
            stopped = await reader.get("/")
            stopped_text = await stopped.text()
            replacement = await _open_viewer(reader)

        assert asset.status == 503 and "viewer-stopped" in await asset.text()
        assert stopped.status == 503 and "ended by SIGKILL" in stopped_text
        assert replacement["pid"] != pid

    _run(_launcher(tmp_path, grace_s=30.0), scenario)


@pytest.mark.slow
@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
def test_no_viewer_outlives_its_front_however_the_front_ends(
    tmp_path: Path, stop_signal: signal.Signals
) -> None:
    """Ctrl-C and SIGTERM: the front stops its viewers; SIGKILL: each viewer stops itself."""
    LocalArchive(tmp_path / "archive").close()  # an empty archive
    with running_server(
        ["--archive", str(tmp_path / "archive")], free_loopback_port(), tmp_path / "work"
    ) as server:
        reader = requests.Session()
        for _ in range(600):
            page = reader.get(server.url, timeout=30)
            if "viewer-starting" not in page.text:
                break
            time.sleep(0.2)
        (viewer,) = server.viewer_pids()
        assert page.status_code == 200 and is_running(viewer)
        server.process.send_signal(stop_signal)
        front_status = server.process.wait(timeout=30)
        deadline = time.monotonic() + 30
        while is_running(viewer) and time.monotonic() < deadline:
            time.sleep(0.2)

        assert not is_running(viewer)
        if stop_signal != signal.SIGKILL:
            assert front_status == 0, server.log_tail()
            assert "Traceback" not in server.log_tail(20_000)
