"""Named DICOMweb (PACS) servers and where their secrets come from.

How to use::

    from MSKPriorsLib.servers import resolve_server

    server = resolve_server("hospital")            # a name from the configuration file
    server = resolve_server("http://127.0.0.1:8042/dicom-web")   # or a plain URL

The configuration is a JSON file named by the environment variable ``MSKWB_SERVERS``
(default ``~/.config/mskwb/servers.json``)::

    {"servers": [
        {"name": "hospital", "url": "https://pacs.example.org/dicom-web",
         "auth": "basic", "username": "reader", "password_env": "HOSPITAL_PACS_PASSWORD",
         "ca_bundle": "/etc/ssl/hospital-ca.pem", "connect_timeout_s": 10,
         "read_timeout_s": 120},
        {"name": "cloud", "url": "https://dicomweb.example.org", "auth": "bearer",
         "token_env": "CLOUD_PACS_TOKEN"}
    ]}

Secrets are read from the named environment variable or, failing that, from a ``password``
or ``token`` entry in the file itself (keep that file private). A plain URL takes its
credentials from ``MSKWB_PACS_USERNAME`` with ``MSKWB_PACS_PASSWORD``, or from
``MSKWB_PACS_TOKEN``. Secrets are never accepted on the command line (a URL with
``user:password@`` is refused) and never appear in ``repr``, logs or :meth:`PacsServer.describe`.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import requests

logger = logging.getLogger(__name__)

CONFIG_ENVIRONMENT_VARIABLE = "MSKWB_SERVERS"
DEFAULT_CONFIG_PATH = Path("~/.config/mskwb/servers.json")
URL_USERNAME_VARIABLE = "MSKWB_PACS_USERNAME"
URL_PASSWORD_VARIABLE = "MSKWB_PACS_PASSWORD"
URL_TOKEN_VARIABLE = "MSKWB_PACS_TOKEN"

AuthKind = Literal["none", "basic", "bearer"]
AUTH_KINDS: tuple[str, ...] = ("none", "basic", "bearer")


class ServerConfigError(ValueError):
    """A server name, URL or configuration entry that cannot be used."""


class BearerAuth(requests.auth.AuthBase):
    """``Authorization: Bearer <token>`` for every request; the token is kept out of ``repr``."""

    def __init__(self, token: str) -> None:
        self._token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self._token}"
        return request

    def __repr__(self) -> str:
        return "BearerAuth(token=<hidden>)"


class HiddenBasicAuth(requests.auth.HTTPBasicAuth):
    """HTTP basic authentication whose ``repr`` names the user but never the password."""

    def __repr__(self) -> str:
        return f"HiddenBasicAuth(username={self.username!r}, password=<hidden>)"


@dataclass(frozen=True)
class PacsServer:
    """One DICOMweb server: where it is, how to authenticate and how to check TLS.

    Attributes
    ----------
    name
        Short name used on the command line and as ``source`` of the records it returns.
    url
        DICOMweb base URL (the prefix of ``/studies``), without credentials.
    auth
        ``none``, ``basic`` or ``bearer``.
    username
        User name for basic authentication.
    password_env, token_env
        Names of the environment variables holding the password or bearer token.
    verify_tls
        Check the server certificate (on by default; turning it off is logged as a warning).
    ca_bundle
        Path of a PEM file of trusted certificate authorities, or None for the system set.
    connect_timeout_s, read_timeout_s
        Seconds to wait for a connection and between received bytes.
    """

    name: str
    url: str
    auth: AuthKind = "none"
    username: str = ""
    password_env: str = ""
    token_env: str = ""
    verify_tls: bool = True
    ca_bundle: str | None = None
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 120.0
    stored_secret: str = field(default="", repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.auth not in AUTH_KINDS:
            raise ServerConfigError(
                f"server {self.name!r}: auth must be one of {', '.join(AUTH_KINDS)}, "
                f"not {self.auth!r}"
            )
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ServerConfigError(f"server {self.name!r}: {self.url!r} is not an http(s) URL")
        if parts.username or parts.password:
            raise ServerConfigError(
                f"server {self.name!r}: credentials in the URL are refused; use "
                "password_env/token_env in the server configuration"
            )

    @property
    def timeout(self) -> tuple[float, float]:
        """``(connect, read)`` timeouts in seconds, as ``requests`` takes them."""
        return (self.connect_timeout_s, self.read_timeout_s)

    @property
    def verify(self) -> bool | str:
        """The value for ``requests``' ``verify``: the CA bundle path, or whether to verify."""
        if not self.verify_tls:
            return False
        return self.ca_bundle or True

    def secret(self) -> str:
        """Return the password or token, from its environment variable or the config file.

        Raises
        ------
        ServerConfigError
            When the authentication needs a secret and none is available.
        """
        if self.auth == "none":
            return ""
        variable = self.password_env if self.auth == "basic" else self.token_env
        value = os.environ.get(variable, "") if variable else ""
        if not value:
            value = self.stored_secret
        if not value:
            what = "password" if self.auth == "basic" else "token"
            where = f"environment variable {variable}" if variable else "the server configuration"
            raise ServerConfigError(f"server {self.name!r}: no {what} found in {where}")
        return value

    def requests_auth(self) -> requests.auth.AuthBase | None:
        """Return the ``requests`` authentication object for this server (None for no auth)."""
        if self.auth == "basic":
            return HiddenBasicAuth(self.username, self.secret())
        if self.auth == "bearer":
            return BearerAuth(self.secret())
        return None

    def describe(self) -> dict[str, Any]:
        """Return the settings that are safe to show or log (never the secret)."""
        return {
            "name": self.name,
            "url": self.url,
            "auth": self.auth,
            "username": self.username,
            "verify_tls": self.verify_tls,
            "ca_bundle": self.ca_bundle,
            "timeout_s": list(self.timeout),
        }


def config_path() -> Path:
    """Return the path of the server configuration file (it may not exist)."""
    named = os.environ.get(CONFIG_ENVIRONMENT_VARIABLE)
    return Path(named).expanduser() if named else DEFAULT_CONFIG_PATH.expanduser()


def server_from_entry(entry: dict[str, Any]) -> PacsServer:
    """Build a :class:`PacsServer` from one configuration entry (a JSON object)."""
    known = {
        "name",
        "url",
        "auth",
        "username",
        "password_env",
        "token_env",
        "verify_tls",
        "ca_bundle",
        "connect_timeout_s",
        "read_timeout_s",
        "password",
        "token",
    }
    name = str(entry.get("name", ""))
    unknown = sorted(set(entry) - known)
    if unknown:
        raise ServerConfigError(f"server {name!r}: unknown settings {', '.join(unknown)}")
    if not name or not entry.get("url"):
        raise ServerConfigError("every server entry needs a 'name' and a 'url'")
    auth = str(entry.get("auth", "none"))
    stored = str(entry.get("token" if auth == "bearer" else "password", "") or "")
    return PacsServer(
        name=name,
        url=str(entry["url"]).rstrip("/"),
        auth=auth,  # type: ignore[arg-type]
        username=str(entry.get("username", "")),
        password_env=str(entry.get("password_env", "")),
        token_env=str(entry.get("token_env", "")),
        verify_tls=bool(entry.get("verify_tls", True)),
        ca_bundle=str(entry["ca_bundle"]) if entry.get("ca_bundle") else None,
        connect_timeout_s=float(entry.get("connect_timeout_s", 10.0)),
        read_timeout_s=float(entry.get("read_timeout_s", 120.0)),
        stored_secret=stored,
    )


def load_servers(path: Path | None = None) -> dict[str, PacsServer]:
    """Read the configured servers, by name.

    Parameters
    ----------
    path
        The JSON file; default :func:`config_path`. A missing file means no servers.

    Raises
    ------
    ServerConfigError
        When the file is not valid JSON or an entry is wrong (the message names it).
    """
    path = path or config_path()
    if not path.is_file():
        return {}
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise ServerConfigError(f"cannot read the server configuration {path}: {error}") from error
    entries = document.get("servers", []) if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise ServerConfigError(f"{path}: expected {{'servers': [ ... ]}}")
    servers: dict[str, PacsServer] = {}
    for entry in entries:
        server = server_from_entry(entry)
        servers[server.name] = server
    for server in servers.values():
        if not server.verify_tls:
            logger.warning("TLS certificate verification is off for server %s", server.name)
    return servers


def server_from_url(url: str) -> PacsServer:
    """Make a server for a plain URL; credentials come from the ``MSKWB_PACS_*`` variables."""
    url = url.rstrip("/")
    host = urlsplit(url).hostname or url
    if os.environ.get(URL_TOKEN_VARIABLE):
        return PacsServer(name=host, url=url, auth="bearer", token_env=URL_TOKEN_VARIABLE)
    if os.environ.get(URL_USERNAME_VARIABLE):
        return PacsServer(
            name=host,
            url=url,
            auth="basic",
            username=os.environ[URL_USERNAME_VARIABLE],
            password_env=URL_PASSWORD_VARIABLE,
        )
    return PacsServer(name=host, url=url)


def resolve_server(name_or_url: str, path: Path | None = None) -> PacsServer:
    """Return the server a ``--pacs`` value names: a configured name or an http(s) URL.

    Raises
    ------
    ServerConfigError
        When the name is not configured (the message lists the known names).
    """
    if name_or_url.startswith(("http://", "https://")):
        return server_from_url(name_or_url)
    servers = load_servers(path)
    if name_or_url in servers:
        return servers[name_or_url]
    known = ", ".join(sorted(servers)) or "none"
    raise ServerConfigError(
        f"no PACS server named {name_or_url!r} in {path or config_path()} (configured: {known})"
    )
