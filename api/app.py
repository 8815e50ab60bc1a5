"""The web process's machine-facing endpoints: the HTTP intake, health, readiness and metrics.

==================================  =====================  ===========================================
path                                auth                   what
==================================  =====================  ===========================================
``POST /api/v1/syncs``              bearer (API_TOKENS)    ``request_sync`` for other services
``GET /api/v1/syncs/<id>``          bearer                 ``get_sync``
``GET /api/v1/wallets/<a>/syncs``   bearer                 a wallet's latest operations
``GET /api/v1/wallets/<a>/portfolio`` bearer               ``get_portfolio``, with ``ETag``/``If-None-Match``
``GET /api/v1/openapi.json``        none                   the OpenAPI document (``api.openapi``)
``GET /healthz``                    none                   the process is alive (no I/O)
``GET /readyz``                     none                   Redis and PostgreSQL answer, schema applied
``GET /metrics``                    bearer                 the web process's Prometheus metrics
==================================  =====================  ===========================================

:func:`mounts` gives them as Flask apps by mount point, for werkzeug's ``DispatcherMiddleware``
(``web`` puts them in front of the dashboard; :func:`create_app` serves them alone).  They are
apps of their own, not blueprints of the dashboard's server, so that the dashboard's login and
its same-origin rule for POSTs do not apply here (a bearer token is not sent by a browser on its
own), and the API's JSON errors, body limit and rate limit do not apply to the dashboard.
``DispatcherMiddleware`` strips the mount point from the path: the intake's routes are relative
to ``/api``, and each health endpoint is an app of one route at its mount point.  The apps of one
process share one :class:`_State` (token digests, rate limiter, readiness probe).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import re
import threading
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import flask
import psycopg
import redis
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.dispatcher import DispatcherMiddleware

import actors
import settings as settings_module
from actors.services import metrics, observe
from actors.validation import InvalidSyncRequest, validate_user_id, validate_wallet
from storage import operating

from . import openapi
from .hosts import HostAllowList

logger = logging.getLogger("api")

REALM = "portfolio-sync"
_REQUEST_FIELDS = {"user_id", "wallet_address", "chain_ids", "priority", "force"}
_HIDDEN_FIELDS = ("worker_id", "message_id", "requeues")  # internal; not part of the API's Operation
#: A whole number as a query parameter may spell it: ASCII digits only (str.isdigit() takes '²', which int()
#: then refuses), and few enough for any id or limit.
_DIGITS = re.compile(r"[0-9]{1,16}")
_ERROR_CODES = {400: "invalid_request", 401: "unauthorized", 404: "not_found", 405: "method_not_allowed",
                409: "conflict", 413: "payload_too_large", 415: "unsupported_media_type", 429: "rate_limited",
                503: "unavailable"}

#: The intake, mounted at ``/api`` (its endpoints keep the name ``api.*`` that the request metrics carry).
api = flask.Blueprint("api", __name__, url_prefix="/v1")


# -------------------------------------------------------------------------------- the app --

def mounts(cfg: settings_module.Settings | None = None) -> dict[str, flask.Flask]:
    """The apps by mount point, configured from ``cfg`` (default: the process's settings)."""
    return _mounts(_start(cfg))


def create_app(cfg: settings_module.Settings | None = None) -> HostAllowList:
    """The endpoints alone, each on its path (any other path is the API's JSON 404), behind the ``Host``
    allow-list."""
    state = _start(cfg)
    return HostAllowList(DispatcherMiddleware(_app(state), _mounts(state)), state.cfg.dashboard.allowed_hosts)


def _start(cfg: settings_module.Settings | None) -> _State:
    cfg = cfg or settings_module.get()
    if cfg.metrics.enabled:
        directory = metrics.web_directory(cfg)
        if directory is not None:
            metrics.remove_ended_runs(cfg, keep=directory)
        metrics.enable(cfg, directory)
    return _State(cfg)


def _mounts(state: _State) -> dict[str, flask.Flask]:
    return {"/api": _app(state, api), "/healthz": _app(state, _health(healthz)),
            "/readyz": _app(state, _health(readyz)), "/metrics": _app(state, _health(metrics_endpoint))}


def _app(state: _State, blueprint: flask.Blueprint | None = None) -> flask.Flask:
    app = flask.Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = state.cfg.api.max_body_bytes
    app.extensions["portfolio_sync"] = state
    if blueprint is not None:
        app.register_blueprint(blueprint)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected_error)
    app.before_request(_start_timer)
    app.after_request(_finish)
    app.wsgi_app = _at_mount_point(app.wsgi_app)
    return app


def _health(view: Callable) -> flask.Blueprint:
    """A blueprint of ``view`` alone, at the root of its app (the mount point, see :func:`_at_mount_point`)."""
    blueprint = flask.Blueprint("health", __name__)
    blueprint.add_url_rule("/", view.__name__, view, methods=["GET"])
    return blueprint


def _at_mount_point(wsgi_app: Callable) -> Callable:
    """``wsgi_app`` answering a request for its mount point itself (``/healthz``) at ``/``.

    ``DispatcherMiddleware`` passes such a request with an empty path, which werkzeug's router
    matches to ``/`` only when the method is allowed: a POST would be a 404 instead of a 405.
    """

    def app(environ, start_response):
        environ["PATH_INFO"] = environ.get("PATH_INFO") or "/"
        return wsgi_app(environ, start_response)

    return app


class _State:
    """What one app instance holds: its settings, token digests, rate limiter and readiness probe."""

    def __init__(self, cfg: settings_module.Settings):
        self.cfg = cfg
        self.token_digests = tuple(hashlib.sha256(t.encode()).digest() for t in cfg.api.tokens)
        self.readiness = Readiness(cfg)
        self.limiter = RateLimit(cfg) if cfg.api.rate_limit else None
        self.spec = openapi.document(cfg.sync.chains)


def _state() -> _State:
    return flask.current_app.extensions["portfolio_sync"]


# ---------------------------------------------------------------------------- responses --

def _json(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> flask.Response:
    response = flask.Response(flask.json.dumps(payload), status=status, mimetype="application/json",
                              headers=headers)
    response.headers["Cache-Control"] = "no-store"
    return response


def _error(status: int, message: str, headers: dict[str, str] | None = None, **extra: Any) -> flask.Response:
    return _json({"error": _ERROR_CODES.get(status, "internal_error"), "message": message, **extra}, status, headers)


def _http_error(exc: HTTPException) -> flask.Response:
    status = exc.code or 500
    messages = {404: "no such endpoint", 405: f"method {flask.request.method} is not allowed here",
                413: f"the request body is larger than API_MAX_BODY_BYTES ({_state().cfg.api.max_body_bytes} bytes)"}
    response = _error(status, messages.get(status, exc.description or exc.name))
    if getattr(exc, "valid_methods", None):
        response.headers["Allow"] = ", ".join(exc.valid_methods)
    return response


def _unexpected_error(exc: Exception) -> flask.Response:
    if isinstance(exc, HTTPException):
        return _http_error(exc)
    logger.exception("API: %s %s failed unexpectedly.", flask.request.method, flask.request.path)
    return _json({"error": "internal_error", "message": "an unexpected error occurred; it was logged"}, 500)


def _unavailable(message: str) -> flask.Response:
    return _error(503, message, {"Retry-After": "5"})


def _start_timer() -> None:
    flask.g.started = time.monotonic()


def _finish(response: flask.Response) -> flask.Response:
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    rule = flask.request.url_rule
    endpoint = rule.endpoint if rule is not None else "unmatched"
    metrics.inc("portfolio_sync_http_requests_total", endpoint=endpoint, method=flask.request.method,
                status=response.status_code)
    if "started" in flask.g:
        metrics.observe("portfolio_sync_http_request_duration_seconds", time.monotonic() - flask.g.started,
                        endpoint=endpoint)
    return response


def operation_json(row: dict) -> dict:
    """An audit row as the API's ``Operation``: ``operation_id``, decimals and times as strings."""
    out: dict[str, Any] = {"operation_id": str(row["id"])}
    for key, value in row.items():
        if key == "id" or key in _HIDDEN_FIELDS:
            continue
        if isinstance(value, Decimal):
            value = str(value)
        elif hasattr(value, "isoformat"):
            value = value.isoformat()
        elif key == "chain_ids" and value is not None:
            value = list(value)
        out[key] = value
    return out


# ---------------------------------------------------------------------------- auth, limits --

@api.before_request
def _authenticate():
    if flask.request.endpoint == "api.openapi_document":
        return None
    return _require_token()


def _require_token() -> flask.Response | None:
    state = _state()
    header = flask.request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    presented = hashlib.sha256(token.strip().encode("utf-8", "replace")).digest()
    matched = None
    for digest in state.token_digests:  # every token compared, always: the time says nothing
        if hmac.compare_digest(presented, digest) and scheme.lower() == "bearer":
            matched = digest
    if matched is None:
        message = ("the API is disabled: no API_TOKENS are configured" if not state.token_digests else
                   "a bearer token of API_TOKENS is required" if not header else "the bearer token is not valid")
        if header:
            logger.warning("API: refused a request to %s from %s: bad token.", flask.request.path,
                           flask.request.remote_addr)
        return _error(401, message, {"WWW-Authenticate": f'Bearer realm="{REALM}"'})
    if state.limiter is not None:
        retry_after = state.limiter.hit(matched.hex()[:32])
        if retry_after is not None:
            return _error(429, f"more than {state.limiter.describe()} requests for this token; retry later",
                          {"Retry-After": str(retry_after)})
    return None


class RateLimit:
    """API_RATE_LIMIT per token, counted in Redis (a sliding window of the ``limits`` library) so
    that every web process shares it.  If Redis does not answer, requests are let through."""

    def __init__(self, cfg: settings_module.Settings):
        from limits import RateLimitItemPerHour, RateLimitItemPerMinute, RateLimitItemPerSecond
        from limits.storage import RedisStorage
        from limits.strategies import SlidingWindowCounterRateLimiter

        amount, per = cfg.api.rate_limit
        item_class = {"second": RateLimitItemPerSecond, "minute": RateLimitItemPerMinute,
                      "hour": RateLimitItemPerHour}[per]
        self.item = item_class(amount)
        pool = redis.ConnectionPool.from_url(cfg.redis.url, socket_timeout=1, socket_connect_timeout=1)
        self.storage = RedisStorage("redis://", connection_pool=pool, key_prefix=f"{cfg.sync.namespace}:ratelimit")
        self.limiter = SlidingWindowCounterRateLimiter(self.storage)
        self.cfg = cfg

    def describe(self) -> str:
        amount, per = self.cfg.api.rate_limit
        return f"{amount} per {per}"

    def hit(self, key: str) -> int | None:
        """Count a request of ``key``; ``None`` if allowed, else the seconds to wait."""
        try:
            if self.limiter.hit(self.item, key):
                return None
            reset_at, _remaining = self.limiter.get_window_stats(self.item, key)
            return max(1, math.ceil(reset_at - time.time()))
        except redis.RedisError as exc:
            logger.warning("API: the rate limit could not be checked (%s); the request is let through.",
                           self.cfg.redact(str(exc)))
            return None


# ---------------------------------------------------------------------------------- the API --

@api.get("/openapi.json")
def openapi_document():
    return _json(_state().spec)


@api.post("/syncs")
def post_sync():
    if not flask.request.is_json:
        return _error(415, "the body must be JSON (Content-Type: application/json)")
    try:
        body = flask.request.get_json(silent=True)
    except RecursionError:
        return _error(400, "the body is nested too deeply")
    if not isinstance(body, dict):
        return _error(400, "the body must be a JSON object")
    unknown = set(body) - _REQUEST_FIELDS
    if unknown:
        return _error(400, f"unknown field(s): {', '.join(sorted(unknown))}")
    if "user_id" not in body or "wallet_address" not in body:
        return _error(400, "user_id and wallet_address are required")
    chain_ids = body.get("chain_ids")
    observe.forget_admissions()
    try:
        op_id = actors.request_sync(body["user_id"], body["wallet_address"], chain_ids,
                                    priority=body.get("priority", "normal"), force=body.get("force", False),
                                    trigger="api")
    except InvalidSyncRequest as exc:
        return _error(400, str(exc))
    except actors.SyncUnavailable as exc:
        return _unavailable(str(exc))
    admissions = observe.last_admissions() or []
    decision = admissions[0].decision if admissions else "accepted"
    url = flask.url_for("api.get_sync", operation_id=op_id)
    if decision == "accepted":
        return _json({"operation_id": op_id, "status": "queued", "admission": decision, "url": url}, 202,
                     {"Location": url})
    try:
        existing = actors.get_sync(op_id)
    except actors.SyncUnavailable as exc:
        return _unavailable(str(exc))
    if existing is None:  # no audit row to answer with (e.g. removed by retention meanwhile): ask again
        return _unavailable("the operation this request resolved to is not recorded; retry in a moment")
    cfg = _state().cfg
    requested = set(chain_ids) if chain_ids is not None else set(cfg.sync.chains)
    if requested <= set(existing["chain_ids"]):
        return _json({"operation_id": op_id, "status": existing["status"], "admission": decision, "url": url})
    missing = ", ".join(map(str, sorted(requested - set(existing["chain_ids"]))))
    if decision == "duplicate":
        return _error(409, f"a sync of this wallet is {existing['status']} without chain(s) {missing}; "
                           "request again once it has finished", operation_id=op_id, admission=decision)
    headers = {}
    if existing.get("finished_at") is not None:
        left = cfg.sync.cooldown_seconds - (time.time() - existing["finished_at"].timestamp())
        headers["Retry-After"] = str(max(1, math.ceil(left)))
    return _error(409, f"this wallet was synced successfully within SYNC_COOLDOWN_SECONDS without chain(s) "
                       f"{missing}; request again after the cooldown, or with force", headers,
                  operation_id=op_id, admission=decision)


@api.get("/syncs/<operation_id>")
def get_sync(operation_id: str):
    try:
        row = actors.get_sync(operation_id)
    except InvalidSyncRequest as exc:
        return _error(400, str(exc))
    except actors.SyncUnavailable as exc:
        return _unavailable(str(exc))
    if row is None:
        return _error(404, f"no operation {operation_id}")
    return _json(operation_json(row))


@api.get("/wallets/<wallet_address>/syncs")
def wallet_syncs(wallet_address: str):
    try:
        wallet = validate_wallet(wallet_address)
    except InvalidSyncRequest as exc:
        return _error(400, str(exc))
    user_id = flask.request.args.get("user_id")
    if user_id is not None:
        try:
            user_id = validate_user_id(user_id)
        except InvalidSyncRequest as exc:
            return _error(400, str(exc))
    limit_text = flask.request.args.get("limit", "20")
    if not _DIGITS.fullmatch(limit_text) or not 1 <= int(limit_text) <= 100:
        return _error(400, f"limit must be an integer from 1 to 100, got {limit_text[:20]!r}")
    try:
        rows = operating.wallet_syncs(wallet, user_id=user_id, limit=int(limit_text))
    except psycopg.OperationalError as exc:
        return _unavailable(f"PostgreSQL did not answer: {_state().cfg.redact(str(exc))}")
    return _json({"wallet_address": wallet, "syncs": [operation_json(r) for r in rows]})


@api.get("/wallets/<wallet_address>/portfolio")
def wallet_portfolio(wallet_address: str):
    user_id = flask.request.args.get("user_id")
    if user_id is None:
        return _error(400, "user_id is required: a portfolio is one user's view of a wallet")
    chains_text = flask.request.args.get("chain_ids")
    chain_ids = None
    if chains_text is not None:
        parts = chains_text.split(",")
        if not all(_DIGITS.fullmatch(p.strip()) for p in parts):
            return _error(400, f"chain_ids must be chain ids separated by commas, got {chains_text[:40]!r}")
        chain_ids = [int(p) for p in parts]
    try:
        portfolio = actors.get_portfolio(user_id, wallet_address, chain_ids)
    except InvalidSyncRequest as exc:
        return _error(400, str(exc))
    except actors.SyncUnavailable as exc:
        return _unavailable(str(exc))
    if portfolio is None:
        return _error(404, f"wallet {wallet_address.lower()} was never synced for this user: request a sync first "
                           "(POST /api/v1/syncs)")
    etag = portfolio["etag"]
    # A poller that has this version pays one small response, no body (RFC 9110 weak comparison).
    if _matches(etag, flask.request.headers.get("If-None-Match", "")):
        response = flask.Response(status=304)
    else:
        response = _json(actors.portfolio_as_json(portfolio))
    response.headers["ETag"] = etag
    response.headers["Cache-Control"] = "private, no-cache"
    return response


def _matches(etag: str, if_none_match: str) -> bool:
    """Whether ``etag`` is one of an ``If-None-Match`` header's tags (``*``: any), compared weakly."""
    tags = {t.strip().removeprefix("W/") for t in if_none_match.split(",") if t.strip()}
    return "*" in tags or etag.removeprefix("W/") in tags


# ------------------------------------------------------------------------------- health --

def healthz():
    """Alive: answers without touching Redis or PostgreSQL."""
    return _json({"status": "ok"})


def readyz():
    ready, checks = _state().readiness.check()
    return _json({"status": "ready" if ready else "unavailable", "checks": checks}, 200 if ready else 503)


def metrics_endpoint():
    denied = _require_token()
    if denied is not None:
        return denied
    if not _state().cfg.metrics.enabled:
        return _error(404, "metrics are disabled (METRICS_ENABLED=false)")
    body, content_type = metrics.exposition([metrics.QueueCollector()])  # queue gauges: scrapable even where workers are not
    return flask.Response(body, status=200, content_type=content_type)


class Readiness:
    """Redis answers PING, PostgreSQL a statement, and the schema's tables exist; each with a short
    timeout.  The answer is kept for ``ttl_s``, and concurrent polls share one check."""

    def __init__(self, cfg: settings_module.Settings, *, ttl_s: float = 1.0):
        self.cfg = cfg
        self.ttl_s = ttl_s
        self.redis = redis.Redis.from_url(cfg.redis.url, socket_timeout=1, socket_connect_timeout=1)
        self.database = operating.DatabaseProbe(cfg.database.url, timeout_s=2)
        self._lock = threading.Lock()
        self._result: tuple[bool, dict] | None = None
        self._at = 0.0

    def check(self) -> tuple[bool, dict]:
        with self._lock:
            if self._result is not None and time.monotonic() - self._at < self.ttl_s:
                return self._result
            self._result = self._check()
            self._at = time.monotonic()
            return self._result

    def _check(self) -> tuple[bool, dict]:
        checks: dict[str, dict] = {}
        started = time.monotonic()
        try:
            self.redis.ping()
            checks["redis"] = {"ok": True, "ms": round((time.monotonic() - started) * 1000, 1)}
        except redis.RedisError as exc:
            checks["redis"] = {"ok": False, "error": f"{type(exc).__name__}: Redis did not answer"}
        started = time.monotonic()
        try:
            missing = self.database.check()
            checks["postgres"] = {"ok": True, "ms": round((time.monotonic() - started) * 1000, 1)}
            checks["schema"] = {"ok": not missing, "missing_tables": missing}
        except psycopg.Error as exc:
            checks["postgres"] = {"ok": False, "error": f"{type(exc).__name__}: PostgreSQL did not answer"}
            checks["schema"] = {"ok": False, "missing_tables": None}
        ready = all(c["ok"] for c in checks.values())
        if not ready:
            logger.warning("Not ready: %s", ", ".join(k for k, c in checks.items() if not c["ok"]))
        return ready, checks
