"""One reader per viewer process: any other browser gets an "in use" page, never the open case.

trame keeps one state per server and sends it to every connected page, so two browsers on one
viewer process would see (and change) the same open patient. The viewer therefore admits one
reader at a time. A reader is one browser, recognised by a random cookie; the reader holds the
viewer while at least one of its WebSockets is open. Any other browser gets a plain HTML page
saying the viewer is in use, for every request including the WebSocket, so it receives no
state and can trigger nothing. When the reader's last WebSocket closes, the session ends:
pending work is cancelled, the case is cleared, and the next browser may take over with an
empty case.

Behind the multi-reader front (:mod:`mskworkbench.web.launcher`) every reader has a viewer
process of its own: the front names the reader when it starts the process, and the guard is
then *dedicated* to that reader for the life of the process. It stays as a safety net (a
request for another reader is refused), but it never ends the session itself: the front stops
the whole process once the reader is gone, so a reload within the front's grace period finds
the case still open.

The check is an aiohttp middleware around the server's routes. It sees the WebSocket request
before trame does and stays on the call stack for the socket's whole life, which gives the
connection count directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

logger = logging.getLogger(__name__)

READER_COOKIE = "mskwb_reader"

#: How long a request waits for the previous reader's session to finish closing.
TAKEOVER_WAIT_S = 10.0

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def in_use_page() -> str:
    """The HTML page shown to a browser while another reader holds the viewer."""
    return """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><link rel="icon" href="data:,">
<title>MSK Workbench viewer in use</title></head>
<body style="font-family: sans-serif; background: #1e1e1e; color: #eee; margin: 3em;">
<main id="viewer-in-use">
<h1>This viewer is in use by another reader</h1>
<p>An MSK Workbench viewer shows one reader's case at a time, so that no page ever shows or
changes another reader's patient.</p>
<p>Open the address that <code>mskwb serve</code> printed when it started: it gives every
reader a viewer of their own. Or reload this page after the other reader has closed theirs.</p>
</main></body></html>
"""


class SingleReader:
    """Admit one reader (browser) at a time to a viewer server.

    Parameters
    ----------
    end_session
        Coroutine function run after the reader's last WebSocket closed; it must cancel the
        reader's work and clear the case. No other reader is admitted before it returns; if it
        raises, nobody is admitted until the server is restarted.
    port
        Callable returning the server's port, named in the log when a browser is refused.
    """

    def __init__(
        self,
        end_session: Callable[[], Awaitable[None]],
        port: Callable[[], int | None] = lambda: None,
    ) -> None:
        self._end_session = end_session
        self._port = port
        self.holder: str | None = None
        self.connections = 0
        self._ending: asyncio.Task[None] | None = None
        self._failed = False
        self._dedicated: str | None = None

    @property
    def is_free(self) -> bool:
        """Whether the next browser would be admitted."""
        return self.holder is None and self._ending is None

    def dedicate(self, reader: str) -> None:
        """Admit only ``reader`` (its cookie value) for the life of this viewer process.

        The session then never ends here when the reader's pages close: whoever started the
        process stops it, so that a reload finds the case as the reader left it.
        """
        if not reader:
            raise ValueError("a viewer can only be dedicated to a named reader")
        self._dedicated = reader
        self.holder = reader

    def install(self, app: web.Application) -> None:
        """Add the check to the viewer's aiohttp application (after the access check)."""
        app.middlewares.append(self._middleware)

    def _busy_response(self) -> web.Response:
        page = in_use_page()
        if self._failed:
            page = (
                "<!DOCTYPE html><title>MSK Workbench viewer stopped</title>"
                '<main id="viewer-in-use">This viewer could not clear the previous reader\'s '
                "case and admits nobody; restart <code>mskwb serve</code>.</main>"
            )
        return web.Response(
            status=503,
            text=page,
            content_type="text/html",
            headers={"Retry-After": "30", "Cache-Control": "no-store"},
        )

    async def _wait_for_previous_session(self) -> None:
        ending = self._ending
        if ending is None:
            return
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(ending), TAKEOVER_WAIT_S)

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        reader = request.cookies.get(READER_COOKIE, "")
        if self._dedicated is not None:
            if not hmac.compare_digest(reader.encode(), self._dedicated.encode()):
                logger.warning("refused another reader on the viewer of port %s", self._port())
                return self._busy_response()
            return await handler(request)
        await self._wait_for_previous_session()
        taken = self.holder is not None and reader != self.holder
        if self._failed or self._ending is not None or taken:
            logger.info("refused a second reader on the viewer of port %s", self._port())
            return self._busy_response()
        new_reader = not reader
        if new_reader:
            reader = secrets.token_urlsafe(18)
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await self._hold(reader, request, handler)
        response: Any = await handler(request)
        if new_reader and isinstance(response, web.StreamResponse) and not response.prepared:
            response.set_cookie(READER_COOKIE, reader, httponly=True, samesite="Strict")
        return response

    async def _hold(self, reader: str, request: web.Request, handler: Handler) -> Any:
        """Serve one WebSocket of the holding reader; end the session with its last one."""
        if self.holder is None:
            logger.info("reader session started from %s", request.remote)
        self.holder = reader
        self.connections += 1
        try:
            return await handler(request)
        finally:
            self.connections -= 1
            if self.connections == 0:
                self._ending = asyncio.get_running_loop().create_task(self._finish())

    async def _finish(self) -> None:
        try:
            await self._end_session()
        except Exception:
            # The previous case may still be in the scene: admitting anyone could show it.
            logger.exception("clearing the reader's case failed; the viewer admits nobody now")
            self._failed = True
        else:
            logger.info("reader session ended; the viewer is free")
        self.holder = None
        self._ending = None
