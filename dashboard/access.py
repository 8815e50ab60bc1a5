"""Who may open the dashboard.

- With ``DASHBOARD_USERNAME`` and ``DASHBOARD_PASSWORD`` set, every request of the Flask server
  (pages, callbacks, assets, component bundles) needs them, as HTTP basic auth; the password is
  compared in constant time and never logged.
- Without them, the dashboard refuses to start on an address other than loopback, unless
  ``DASHBOARD_PROTECTED_ELSEWHERE=true`` says a proxy in front of it authenticates users.
  :func:`exposure_problem` is checked at import of ``dashboard.app`` (on ``DASHBOARD_HOST``) and
  by ``gunicorn.conf.py`` on every address gunicorn is told to bind.
- A callback (a POST) is accepted only as JSON from the dashboard's own origin, so another site
  cannot make a logged-in browser re-drive dead letters.
"""

from __future__ import annotations

import base64
import hmac
import ipaddress
import logging

import flask

import settings as settings_module

logger = logging.getLogger("dashboard.access")

REALM = "portfolio-sync dashboard"
_CREDENTIALS = "DASHBOARD_CREDENTIALS"


def is_loopback(host: str) -> bool:
    """``True`` for localhost and the loopback addresses (``127.0.0.0/8``, ``::1``)."""
    host = host.strip().strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind_host(bind: str) -> str | None:
    """The host of a gunicorn bind (``HOST:PORT``, ``[V6]:PORT``, ``HOST``); ``None`` for a unix socket."""
    if bind.startswith("unix:"):
        return None
    if bind.startswith("fd://"):
        return bind  # an inherited socket: where it listens is unknown, so not loopback
    if bind.startswith("["):
        return bind[1:bind.index("]")] if "]" in bind else bind
    return bind.rsplit(":", 1)[0] if bind.count(":") == 1 else bind


def exposure_problem(host: str | None, cfg: settings_module.Settings) -> str | None:
    """Why listening on ``host`` would be unsafe with ``cfg``, or ``None`` if it is fine."""
    if host is None or is_loopback(host):
        return None
    if cfg.dashboard.username and cfg.dashboard.password:
        return None
    if cfg.dashboard.protected_elsewhere:
        return None
    return (f"the dashboard would listen on {host}, which is not a loopback address, without a login: set "
            "DASHBOARD_USERNAME and DASHBOARD_PASSWORD, or DASHBOARD_PROTECTED_ELSEWHERE=true if a proxy in "
            "front of it authenticates users (or bind it to 127.0.0.1)")


def check_exposure(host: str | None, cfg: settings_module.Settings) -> None:
    """Raise :class:`settings.ConfigError` if :func:`exposure_problem` finds one."""
    problem = exposure_problem(host, cfg)
    if problem:
        raise settings_module.ConfigError(problem)


def install(server: flask.Flask, cfg: settings_module.Settings) -> None:
    """Guard every request of ``server``: the login (if configured) and the origin of callbacks."""
    server.config[_CREDENTIALS] = ((cfg.dashboard.username, cfg.dashboard.password)
                                   if cfg.dashboard.username and cfg.dashboard.password else None)
    server.before_request(_guard)
    server.after_request(_headers)


def set_credentials(server: flask.Flask, username: str | None, password: str | None) -> None:
    """Change the login of a running server (``None``: none); for tests and embedding."""
    server.config[_CREDENTIALS] = (username, password) if username and password else None


def _guard():
    credentials = flask.current_app.config.get(_CREDENTIALS)
    if credentials is not None and not _authorized(flask.request, credentials):
        return flask.Response("Authentication required.\n", status=401, mimetype="text/plain",
                              headers={"WWW-Authenticate": f'Basic realm="{REALM}", charset="UTF-8"'})
    if flask.request.method not in ("GET", "HEAD", "OPTIONS"):
        problem = _cross_site(flask.request)
        if problem:
            logger.warning("Refused a %s to %s: %s.", flask.request.method, flask.request.path, problem)
            return flask.Response(f"Forbidden: {problem}.\n", status=403, mimetype="text/plain")
    return None


def _authorized(request: flask.Request, credentials: tuple[str, str]) -> bool:
    header = request.headers.get("Authorization", "")
    scheme, _, encoded = header.partition(" ")
    username, password = "", ""
    if scheme.lower() == "basic":
        try:
            username, _, password = base64.b64decode(encoded.strip(), validate=True).decode("utf-8").partition(":")
        except (ValueError, UnicodeDecodeError):
            username, password = "", ""
    # Both compared, always: the time taken says nothing about which one was wrong.
    user_ok = hmac.compare_digest(username.encode("utf-8"), credentials[0].encode("utf-8"))
    password_ok = hmac.compare_digest(password.encode("utf-8"), credentials[1].encode("utf-8"))
    if header and not (user_ok and password_ok):
        logger.warning("Dashboard: failed login from %s.", request.remote_addr)
    return user_ok and password_ok


def _cross_site(request: flask.Request) -> str | None:
    if request.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
        return "a request from another site"
    origin = request.headers.get("Origin")
    if origin and origin != "null":
        if origin.split("://", 1)[-1].rstrip("/") != request.host:
            return "a request from another origin"
    if request.path.endswith("_dash-update-component") and not request.is_json:
        return "a callback that is not JSON"
    return None


def _headers(response: flask.Response) -> flask.Response:
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    if flask.request.path.endswith("_dash-update-component"):
        response.headers["Cache-Control"] = "no-store"
    return response
