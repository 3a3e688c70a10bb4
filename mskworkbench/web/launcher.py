"""The multi-reader front of ``mskwb serve``: one viewer process per reader, behind one address.

trame shares one state among all pages of a server, and a plan or a retrieval keeps its
server busy; so every reader (one browser, recognised by a random cookie) gets a viewer
process of their own, started on demand on a free loopback port, and the front relays that
reader's requests and WebSockets to it (:mod:`mskworkbench.web.proxy`). No request of one
reader can reach another reader's process: the front routes on the reader's cookie only, and
each process answers nothing but requests that carry its own random secret, which only the
front knows.

Life of a viewer process:

- started by the first page load of a new reader, if fewer than ``max_readers`` are open
  (otherwise the browser gets a page saying every place is taken); the page shows "starting"
  and reloads itself until the viewer is ready;
- stopped (SIGTERM, then SIGKILL) and reaped once its reader has had no open WebSocket and no
  request under way for ``grace_s`` seconds, so that a reload keeps the case;
- a process that exits on its own is reported on its reader's next page load, and the load
  after that starts a new one;
- all are stopped when the front stops. Each also exits by itself when the front's end of its
  standard input closes, so not even a killed front leaves one behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from aiohttp import web

from mskworkbench.web import launcher_pages as pages
from mskworkbench.web import proxy
from mskworkbench.web.access import FRONT_SECRET_HEADER
from mskworkbench.web.single_reader import READER_COOKIE

logger = logging.getLogger(__name__)

#: Line a viewer process prints on its standard output once it listens: the prefix, a port.
READY_PREFIX = "MSKWB-VIEWER-PORT "
#: Environment variables that hand a viewer process its secret and its reader.
SECRET_VARIABLE = "MSKWB_VIEWER_SECRET"
READER_VARIABLE = "MSKWB_VIEWER_READER"
#: The front's own status route (readers open, places), for scripts and tests.
STATUS_PATH = "/mskwb/front/status"
PAGE_PATHS = ("/", "/index.html")

#: How long a stopped viewer may take to exit before it is killed.
STOP_WAIT_S = 10.0
#: How many readers whose viewer stopped unexpectedly are remembered to tell them so.
STOPPED_MEMORY = 100

ChildCommand = Callable[[Path], list[str]]


@dataclass
class ViewerChild:
    """One reader's viewer process, as the front sees it."""

    reader: str = field(repr=False)
    name: str
    work_dir: Path
    secret: str = field(repr=False)
    process: asyncio.subprocess.Process | None = None
    port: int | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    started_s: float = field(default_factory=time.monotonic)
    last_activity_s: float = field(default_factory=time.monotonic)
    sockets: int = 0
    requests: int = 0
    stopping: bool = False

    @property
    def is_idle(self) -> bool:
        """Ready, with no open WebSocket and no request under way."""
        return self.port is not None and self.sockets == 0 and self.requests == 0


class ViewerLauncher:
    """Start, route to, and stop one viewer process per reader.

    Parameters
    ----------
    child_command
        Builds the command line of a viewer process from its work folder.
    work_dir
        Folder under which every viewer process gets a subfolder of its own.
    max_readers
        How many viewer processes may run at once.
    grace_s
        How long a viewer is kept after its reader's last WebSocket closed.
    start_timeout_s
        How long a viewer may take to start listening.
    env
        Environment of the viewer processes (the front's own by default).
    """

    def __init__(
        self,
        child_command: ChildCommand,
        work_dir: Path,
        max_readers: int = 4,
        grace_s: float = 15.0,
        start_timeout_s: float = 180.0,
        env: Mapping[str, str] | None = None,
    ) -> None:
        if max_readers < 1:
            raise ValueError(f"the viewer needs at least one reader place, not {max_readers}")
        self.child_command = child_command
        self.work_dir = Path(work_dir)
        self.max_readers = max_readers
        self.grace_s = grace_s
        self.start_timeout_s = start_timeout_s
        self.env = dict(os.environ if env is None else env)
        self.children: dict[str, ViewerChild] = {}
        self._stopped_readers: dict[str, str] = {}
        self._started = 0
        self._client: aiohttp.ClientSession | None = None
        self._reaper: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def install(self, app: web.Application) -> None:
        """Route every request of ``app`` through the launcher (after its access checks)."""
        app.router.add_get(STATUS_PATH, self._status)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        app.on_startup.append(self._on_startup)
        app.on_shutdown.append(self._on_shutdown)

    async def _on_startup(self, _app: web.Application) -> None:
        self._client = proxy.new_client_session()
        self._reaper = asyncio.get_running_loop().create_task(self._reap_idle_children())

    async def _on_shutdown(self, _app: web.Application) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
        await self.stop_all()
        if self._client is not None:
            await self._client.close()

    async def stop_all(self) -> None:
        """Stop every viewer process and wait until each has exited."""
        children = list(self.children.values())
        await asyncio.gather(*(self._stop(child, "the viewer server stops") for child in children))

    async def _status(self, _request: web.Request) -> web.Response:
        return web.json_response(
            {"readers": len(self.children), "max_readers": self.max_readers},
            headers={"Cache-Control": "no-store"},
        )

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        reader = request.cookies.get(READER_COOKIE, "")
        child = self.children.get(reader) if reader else None
        is_page = request.method == "GET" and request.path in PAGE_PATHS
        is_page = is_page and not proxy.is_websocket_request(request)
        if child is None:
            if reader in self._stopped_readers:
                reason = self._stopped_readers[reader]
                if is_page:
                    del self._stopped_readers[reader]
                return pages.page_response(pages.stopped_page(reason), 503)
            if not is_page:
                return pages.page_response(pages.no_viewer_page(), 503)
            if len(self.children) >= self.max_readers:
                logger.info("refused a new reader: all %d places are in use", self.max_readers)
                page = pages.all_in_use_page(self.max_readers, self.grace_s)
                return pages.page_response(page, 503, retry_after_s=round(self.grace_s))
            child = await self._start()
            response = pages.page_response(pages.starting_page(), 200)
            self._set_reader_cookie(response, child.reader)
            return response
        if child.port is None and is_page:
            child.last_activity_s = time.monotonic()
            return pages.page_response(pages.starting_page(), 200)
        return await self._forward(child, request)

    @staticmethod
    def _set_reader_cookie(response: web.StreamResponse, reader: str) -> None:
        response.set_cookie(READER_COOKIE, reader, httponly=True, samesite="Strict")

    async def _forward(self, child: ViewerChild, request: web.Request) -> web.StreamResponse:
        """Relay one request (or WebSocket) of ``child``'s reader to its process."""
        child.requests += 1
        child.last_activity_s = time.monotonic()
        try:
            if child.port is None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(child.ready.wait(), self.start_timeout_s)
            if child.port is None or child.stopping:
                return pages.page_response(
                    pages.stopped_page("Your viewer did not start or was stopped."), 503
                )
            assert self._client is not None
            url = proxy.target_url(child.port, request, drop_query=("token",))
            headers = proxy.forwarded_headers(
                request,
                {FRONT_SECRET_HEADER: child.secret, "Cookie": f"{READER_COOKIE}={child.reader}"},
            )
            if proxy.is_websocket_request(request):
                child.sockets += 1
                try:
                    return await proxy.relay_websocket(self._client, request, url, headers)
                finally:
                    child.sockets -= 1
            return await proxy.relay_http(self._client, request, url, headers)
        finally:
            child.requests -= 1
            child.last_activity_s = time.monotonic()

    async def _start(self) -> ViewerChild:
        """Start a viewer process for a new reader; return at once (it starts meanwhile)."""
        self._started += 1
        name = f"reader-{self._started}-{secrets.token_hex(3)}"
        child = ViewerChild(
            reader=secrets.token_urlsafe(18),
            name=name,
            work_dir=self.work_dir / "readers" / name,
            secret=secrets.token_urlsafe(32),
        )
        child.work_dir.mkdir(parents=True, exist_ok=True)
        self.children[child.reader] = child
        env = {**self.env, SECRET_VARIABLE: child.secret, READER_VARIABLE: child.reader}
        command = self.child_command(child.work_dir)
        try:
            child.process = await asyncio.create_subprocess_exec(
                *command,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                env=env,
                start_new_session=True,
                limit=1 << 20,
            )
        except OSError as error:
            del self.children[child.reader]
            logger.error("could not start a viewer process (%s): %s", command[0], error)
            raise web.HTTPInternalServerError(
                text="The viewer process could not be started."
            ) from error
        logger.info("started viewer %s (pid %d) for a reader", name, child.process.pid)
        self._spawn(self._read_output(child))
        self._spawn(self._watch(child))
        if child.stopping:  # the front began to stop while the process was being started
            child.stopping = False
            await self._stop(child, "the viewer server stops")
        return child

    def _spawn(self, work: Coroutine[object, object, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _read_output(self, child: ViewerChild) -> None:
        """Take the port from the viewer's ready line; log anything else it prints."""
        assert child.process is not None and child.process.stdout is not None
        while line := await child.process.stdout.readline():
            text = line.decode(errors="replace").strip()
            port_text = text[len(READY_PREFIX) :] if text.startswith(READY_PREFIX) else ""
            if port_text.isdigit() and child.port is None:
                child.port = int(port_text)
                child.last_activity_s = time.monotonic()
                child.ready.set()
                logger.info(
                    "viewer %s listens on 127.0.0.1:%d after %.1f s",
                    child.name,
                    child.port,
                    time.monotonic() - child.started_s,
                )
            elif text:
                logger.debug("viewer %s: %s", child.name, text)

    async def _watch(self, child: ViewerChild) -> None:
        """Wait for the process to exit; report an exit nobody asked for to its reader."""
        assert child.process is not None
        status = await child.process.wait()
        child.ready.set()
        if child.stopping:
            return
        self.children.pop(child.reader, None)
        how = _exit_description(status)
        if child.port is None:
            reason = f"Your viewer could not start ({how})."
        else:
            reason = f"Your viewer stopped unexpectedly ({how})."
        logger.warning("viewer %s exited on its own with status %s", child.name, status)
        self._stopped_readers[child.reader] = reason
        while len(self._stopped_readers) > STOPPED_MEMORY:
            del self._stopped_readers[next(iter(self._stopped_readers))]

    async def _reap_idle_children(self) -> None:
        """Stop viewers idle for the grace period, and viewers that never started."""
        while True:
            await asyncio.sleep(min(1.0, self.grace_s / 4))
            now = time.monotonic()
            for child in list(self.children.values()):
                if child.is_idle and now - child.last_activity_s >= self.grace_s:
                    self._spawn(self._stop(child, "its reader left"))
                elif child.port is None and now - child.started_s > self.start_timeout_s:
                    self._stopped_readers[child.reader] = (
                        f"Your viewer did not start within {round(self.start_timeout_s)} s."
                    )
                    self._spawn(self._stop(child, "it did not start in time"))

    async def _stop(self, child: ViewerChild, why: str) -> None:
        """Stop one viewer process (and anything it started) and reap it."""
        if child.stopping:
            return
        child.stopping = True
        self.children.pop(child.reader, None)
        process = child.process
        if process is None:
            return
        logger.info("stopping viewer %s: %s", child.name, why)
        if process.returncode is None:
            _signal_group(process.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), STOP_WAIT_S)
            except TimeoutError:
                logger.warning(
                    "viewer %s ignored SIGTERM for %.0f s; killing it", child.name, STOP_WAIT_S
                )
                _signal_group(process.pid, signal.SIGKILL)
                await process.wait()
        if process.stdin is not None:
            process.stdin.close()
        logger.info("viewer %s exited with status %s", child.name, process.returncode)


def _exit_description(status: int) -> str:
    """How a process ended, in words: its exit status, or the signal that ended it."""
    if status >= 0:
        return f"exit status {status}"
    try:
        name = signal.Signals(-status).name
    except ValueError:
        name = f"signal {-status}"
    return f"ended by {name}"


def _signal_group(pid: int, signal_number: int) -> None:
    """Send a signal to a viewer's process group (it leads its own session)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal_number)


def front_application(
    launcher: ViewerLauncher, install_access: Callable[[web.Application], None]
) -> web.Application:
    """The front's aiohttp application: access checks first, then the launcher's routes."""
    app = web.Application()
    install_access(app)
    launcher.install(app)
    return app


async def serve_front(
    app: web.Application, host: str, port: int, on_listening: Callable[[int], None]
) -> None:
    """Serve ``app`` on ``host:port`` until SIGINT or SIGTERM, then stop it cleanly.

    Parameters
    ----------
    on_listening
        Called with the port actually bound (``port`` may be 0) once the front listens.

    Raises
    ------
    OSError
        If the address cannot be bound (for example, the port is in use).
    """
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, shutdown_timeout=STOP_WAIT_S)
        await site.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signal_number in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signal_number, stop.set)
        on_listening(int(runner.addresses[0][1]))
        await stop.wait()
        logger.info("stopping the viewer server")
    finally:
        await runner.cleanup()
