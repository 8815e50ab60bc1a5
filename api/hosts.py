"""The ``Host`` allow-list of the web process (``WEB_ALLOWED_HOSTS``), in front of the dashboard and the API.

A page of another site whose name resolves to this process's address (DNS rebinding) sends its own
name as ``Host`` and as ``Origin``: the dashboard's cross-site check, which compares the two, cannot
tell it apart.  Only the names this process is meant to be reached by are answered; any other
``Host`` gets 400 before any app runs, so nothing is read or written for it.

The machine endpoints are answered whatever the ``Host``: probes and scrapers reach a process by its
address, ``/healthz`` and ``/readyz`` change and reveal nothing, and ``/metrics`` needs its bearer token,
which a page of another site does not have.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable

from settings.parsers import normalize_host

#: Paths answered whatever the ``Host`` (see the module docstring).
ANY_HOST_PATHS = ("/healthz", "/readyz", "/metrics")
#: ``host[:port]``, the host a name, an IPv4 address or a bracketed IPv6 address.
_HOST_HEADER = re.compile(r"(?P<host>\[[0-9a-fA-F:.]+\]|[^\[\]:/\s@]+)(?::(?P<port>[0-9]{1,5}))?")


def host_of(header: str) -> str | None:
    """The host a ``Host`` header names (see :func:`settings.parsers.normalize_host`), or ``None`` if malformed."""
    match = _HOST_HEADER.fullmatch(header)
    if match is None or (match["port"] is not None and not 0 < int(match["port"]) < 65536):
        return None
    return normalize_host(match["host"])


def allowed(host: str | None, allowed_hosts: Iterable[str]) -> bool:
    """Whether ``host`` (from :func:`host_of`) is one of ``allowed_hosts`` (``.domain``: it or a subdomain)."""
    if host is None:
        return False
    for name in allowed_hosts:
        if name == "*" or name == host or (name.startswith(".") and (host == name[1:] or host.endswith(name))):
            return True
    return False


class HostAllowList:
    """WSGI middleware: ``app`` answers only requests whose ``Host`` is one of ``allowed_hosts``."""

    def __init__(self, app: Callable, allowed_hosts: Iterable[str]):
        self.app = app
        self.allowed_hosts = tuple(allowed_hosts)

    def __call__(self, environ, start_response):
        header = environ.get("HTTP_HOST") or environ.get("SERVER_NAME") or ""
        if allowed(host_of(header), self.allowed_hosts) or environ.get("PATH_INFO") in ANY_HOST_PATHS:
            return self.app(environ, start_response)
        message = "this server does not answer for that Host (see WEB_ALLOWED_HOSTS)"
        if (environ.get("PATH_INFO") or "").startswith("/api/"):
            body, content_type = json.dumps({"error": "invalid_request", "message": message}).encode(), "application/json"
        else:
            body, content_type = f"Bad Request: {message}.\n".encode(), "text/plain; charset=utf-8"
        start_response("400 Bad Request", [("Content-Type", content_type), ("Content-Length", str(len(body)))])
        return [body]
