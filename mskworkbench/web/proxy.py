"""Forward one reader's HTTP requests and WebSockets to that reader's viewer process.

The front (:mod:`mskworkbench.web.launcher`) decides which viewer process a request belongs
to; this module only relays it over loopback. Requests are forwarded with the headers the
front chooses (its secret for the viewer, the reader's cookie) instead of the browser's
hop-by-hop and identity headers; response bodies are streamed as they come, still compressed
if the viewer compressed them, so a large plan download never sits in the front's memory.
WebSocket messages are relayed one by one in both directions until either side closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping

import aiohttp
from aiohttp import WSMsgType, web
from yarl import URL

logger = logging.getLogger(__name__)

#: Request and response headers that describe one connection, not the message.
HOP_BY_HOP_HEADERS = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)

#: Request headers the front never passes on: the target sets its own, or the front does.
_DROPPED_REQUEST_HEADERS = HOP_BY_HOP_HEADERS | {"host", "cookie", "content-length"}
_WEBSOCKET_HANDSHAKE_HEADERS = frozenset(
    {
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-extensions",
        "sec-websocket-protocol",
    }
)

CHUNK_BYTES = 256 * 1024


def new_client_session() -> aiohttp.ClientSession:
    """A client session for relaying: no cookie jar, bodies left as sent, no total timeout.

    The session is shared by all viewer processes, so it must never remember a cookie that
    one viewer set and send it to another.
    """
    return aiohttp.ClientSession(
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
    )


def target_url(port: int, request: web.Request, drop_query: tuple[str, ...] = ()) -> URL:
    """The URL on ``127.0.0.1:port`` for the path and query of ``request``.

    Parameters
    ----------
    port
        Loopback port of the viewer process.
    request
        The browser's request.
    drop_query
        Query parameters the viewer must not see (the front's access token).
    """
    relative = request.rel_url
    if drop_query:
        relative = relative.without_query_params(*drop_query)
    return URL(f"http://127.0.0.1:{port}{relative.raw_path_qs}", encoded=True)


def forwarded_headers(request: web.Request, extra: Mapping[str, str]) -> dict[str, str]:
    """The browser's end-to-end headers, less identity and handshake ones, plus ``extra``."""
    dropped = set(_DROPPED_REQUEST_HEADERS) | {name.lower() for name in extra}
    if is_websocket_request(request):
        dropped |= _WEBSOCKET_HANDSHAKE_HEADERS
    headers = {
        name: value for name, value in request.headers.items() if name.lower() not in dropped
    }
    headers.update(extra)
    return headers


def is_websocket_request(request: web.Request) -> bool:
    """Whether the browser asks to open a WebSocket."""
    return request.headers.get("Upgrade", "").lower() == "websocket"


async def relay_http(
    client: aiohttp.ClientSession,
    request: web.Request,
    url: URL,
    headers: Mapping[str, str],
    before_sending: Callable[[web.StreamResponse], None] | None = None,
) -> web.StreamResponse:
    """Send ``request`` to ``url`` and stream the answer back to the browser.

    Parameters
    ----------
    client
        Session from :func:`new_client_session`.
    request
        The browser's request.
    url
        Where to send it (see :func:`target_url`).
    headers
        Request headers to send (see :func:`forwarded_headers`).
    before_sending
        Called with the response before its headers are sent (the front sets its cookie).

    Raises
    ------
    aiohttp.web.HTTPBadGateway
        If the viewer process cannot be reached or breaks the connection before answering.
    """
    body = await request.read() if request.body_exists else None
    response: web.StreamResponse | None = None
    try:
        async with client.request(
            request.method, url, headers=headers, data=body, allow_redirects=False
        ) as upstream:
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            for name, value in upstream.headers.items():
                if name.lower() not in HOP_BY_HOP_HEADERS:
                    response.headers.add(name, value)
            if before_sending is not None:
                before_sending(response)
            await response.prepare(request)
            async for chunk in upstream.content.iter_chunked(CHUNK_BYTES):
                await response.write(chunk)
            await response.write_eof()
            return response
    except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as error:
        logger.warning("the viewer at %s did not answer %s: %s", url.origin(), url.path, error)
        if response is not None and response.prepared:
            # The status line is gone already: all that is left is to cut the answer short.
            raise ConnectionResetError("the viewer process broke off its answer") from error
        raise web.HTTPBadGateway(text="The viewer process did not answer.") from error


async def relay_websocket(
    client: aiohttp.ClientSession, request: web.Request, url: URL, headers: Mapping[str, str]
) -> web.WebSocketResponse:
    """Open a WebSocket to ``url`` and relay messages between it and the browser's socket.

    The viewer's socket is opened first, so a viewer that refuses it is reported to the
    browser as an HTTP error instead of a socket that closes at once. The relay ends when
    either side closes; the other side is then closed with the same code.

    Raises
    ------
    aiohttp.web.HTTPBadGateway
        If the viewer process refuses or cannot open the socket.
    """
    protocols = [
        protocol.strip()
        for protocol in request.headers.get("Sec-WebSocket-Protocol", "").split(",")
        if protocol.strip()
    ]
    try:
        upstream = await client.ws_connect(
            url, headers=headers, protocols=protocols, max_msg_size=0, compress=0
        )
    except (aiohttp.ClientConnectionError, aiohttp.WSServerHandshakeError) as error:
        logger.warning("the viewer at %s refused a WebSocket: %s", url.origin(), error)
        raise web.HTTPBadGateway(text="The viewer process refused the connection.") from error
    chosen = (upstream.protocol,) if upstream.protocol else ()
    downstream = web.WebSocketResponse(protocols=chosen, max_msg_size=0, compress=False)
    try:
        await downstream.prepare(request)
        to_viewer = asyncio.ensure_future(_pump(downstream, upstream))
        to_browser = asyncio.ensure_future(_pump(upstream, downstream))
        try:
            await asyncio.wait({to_viewer, to_browser}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pump in (to_viewer, to_browser):
                pump.cancel()
            await asyncio.gather(to_viewer, to_browser, return_exceptions=True)
    finally:
        code = upstream.close_code or downstream.close_code or aiohttp.WSCloseCode.GOING_AWAY
        with contextlib.suppress(Exception):
            await upstream.close(code=code)
        with contextlib.suppress(Exception):
            await downstream.close(code=code)
    return downstream


async def _pump(
    source: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
    target: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
) -> None:
    """Copy text and binary messages from ``source`` to ``target`` until ``source`` closes."""
    async for message in source:
        if message.type == WSMsgType.TEXT:
            await target.send_str(message.data)
        elif message.type == WSMsgType.BINARY:
            await target.send_bytes(message.data)
        elif message.type == WSMsgType.ERROR:
            break
