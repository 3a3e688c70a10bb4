"""Who may open the viewer: loopback by default, other hosts only with a token.

The server binds 127.0.0.1 unless the user explicitly allows remote access. A remote viewer
requires a secret token on every HTTP request and on the WebSocket: the first visit carries
it as ``?token=...``, and the server answers with an HTTP-only cookie used from then on.

Behind the multi-reader front (:mod:`mskworkbench.web.launcher`), each reader's viewer process
listens on loopback and answers only requests that carry its own random secret in a header,
which the front adds to what it forwards: another local user or program that finds the
viewer's port can neither read it nor drive it.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

logger = logging.getLogger(__name__)

COOKIE_NAME = "mskwb_token"
#: Header in which the front passes a viewer process its secret.
FRONT_SECRET_HEADER = "X-MSKWB-Viewer-Secret"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


class AccessError(ValueError):
    """The requested binding is not allowed as configured."""


def is_loopback_host(host: str) -> bool:
    """Whether binding ``host`` keeps the server reachable from this machine only."""
    if host in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class AccessPolicy:
    """Binding and authentication of one viewer server.

    Attributes
    ----------
    host
        Address to bind.
    token
        Secret every request must carry; empty means no authentication (loopback only).
    front_secret
        Secret the front adds to every request it forwards to this viewer process (in
        :data:`FRONT_SECRET_HEADER`); empty for a server that browsers reach directly.
    """

    host: str = "127.0.0.1"
    token: str = field(default="", repr=False)
    front_secret: str = field(default="", repr=False)

    @classmethod
    def create(cls, host: str, allow_remote: bool, token: str = "") -> AccessPolicy:
        """Check a requested binding and return its policy.

        A non-loopback host needs ``allow_remote``; it then always gets a token (a random one
        when none was given).

        Raises
        ------
        AccessError
            If a non-loopback host was asked for without ``allow_remote``.
        """
        if is_loopback_host(host):
            return cls(host=host, token=token)
        if not allow_remote:
            raise AccessError(
                f"serving on {host} would expose patient images to other machines; "
                "add --allow-remote to do it (a login token is then required)"
            )
        return cls(host=host, token=token or secrets.token_urlsafe(24))

    def accepts(self, query_token: str, cookie_token: str) -> bool:
        """Whether a request carrying these tokens may proceed."""
        if not self.token:
            return True
        return any(
            candidate and hmac.compare_digest(candidate.encode(), self.token.encode())
            for candidate in (query_token, cookie_token)
        )

    def accepts_front(self, header_secret: str) -> bool:
        """Whether a request carrying this front secret came through the front."""
        if not self.front_secret:
            return True
        return bool(header_secret) and hmac.compare_digest(
            header_secret.encode(), self.front_secret.encode()
        )


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def install_access_control(app: web.Application, policy: AccessPolicy) -> None:
    """Add the front-secret and token checks to an aiohttp application (each only when set)."""
    if policy.front_secret:

        @web.middleware
        async def require_front(request: web.Request, handler: Handler) -> web.StreamResponse:
            if not policy.accepts_front(request.headers.get(FRONT_SECRET_HEADER, "")):
                logger.warning("refused a request that did not come through the front")
                raise web.HTTPForbidden(text="This viewer process is reached through mskwb serve.")
            return await handler(request)

        app.middlewares.append(require_front)
    if not policy.token:
        return

    @web.middleware
    async def require_token(request: web.Request, handler: Handler) -> web.StreamResponse:
        query_token = request.query.get("token", "")
        cookie_token = request.cookies.get(COOKIE_NAME, "")
        if not policy.accepts(query_token, cookie_token):
            logger.warning("refused a request without a valid token from %s", request.remote)
            raise web.HTTPUnauthorized(text="This MSK Workbench viewer needs its access token.")
        response: Any = await handler(request)
        fresh_login = query_token and not cookie_token
        if fresh_login and isinstance(response, web.StreamResponse) and not response.prepared:
            response.set_cookie(COOKIE_NAME, query_token, httponly=True, samesite="Strict")
        return response

    app.middlewares.append(require_token)
