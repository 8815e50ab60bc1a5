"""Configuration, read once from the environment (12-factor).

Every knob of the system is an environment variable listed in ``VARIABLES``
below, with its default and meaning; the README's configuration table is
generated from the same list.  ``load()`` validates all of them and raises
:class:`ConfigError` naming the first bad variable, so a misconfigured
process stops at start instead of failing on its first job.

Secrets (passwords inside URLs, API keys) are kept out of ``repr()`` and
are scrubbed from any text passed through :func:`Settings.redact`, which the
logging filter and the audit trail's error messages both use.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
from collections.abc import Mapping
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

#: Chains synced when a request names none (Ethereum, Optimism, Polygon, Base, Arbitrum One).
DEFAULT_CHAINS = "1,10,137,8453,42161"

#: name -> (default, description).  The single source of truth for configuration.
VARIABLES: dict[str, tuple[str, str]] = {
    "REDIS_URL": ("redis://127.0.0.1:6379/0", "Redis holding the job queue, dedup/cooldown keys and price cache."),
    "DATABASE_URL": ("postgresql://127.0.0.1:5432/portfolio_sync", "PostgreSQL holding holdings and the audit trail."),
    "PORT": ("8050", "Port of the `web` process."),
    "DASHBOARD_HOST": ("127.0.0.1", "Address the dashboard (`web`) binds to; any other than loopback needs DASHBOARD_USERNAME/PASSWORD or DASHBOARD_PROTECTED_ELSEWHERE=true."),
    "DASHBOARD_USERNAME": ("", "Dashboard: HTTP basic-auth user name; set with DASHBOARD_PASSWORD to require a login on every page and callback."),
    "DASHBOARD_PASSWORD": ("", "Dashboard: HTTP basic-auth password (secret, at least 12 characters)."),
    "DASHBOARD_PROTECTED_ELSEWHERE": ("false", "Dashboard: `true` if a proxy in front of it authenticates users, so it may listen on a public address without its own login."),
    "DASHBOARD_DATABASE_URL": ("", "Dashboard: PostgreSQL URL for its reads, e.g. of a read-only role (empty: DATABASE_URL; reads are read-only either way)."),
    "DASHBOARD_DB_POOL_MAX": ("4", "Dashboard: largest size of each web process's read-only PostgreSQL pool."),
    "DASHBOARD_STATEMENT_TIMEOUT_MS": ("5000", "Dashboard: statement_timeout of its reads."),
    "DASHBOARD_REFRESH_S": ("30", "Dashboard: auto-refresh interval of its pages (seconds)."),
    "SYNC_NAMESPACE": ("portfolio-sync", "Prefix of every Redis key the project owns (queues included)."),
    "SYNC_PROVIDER": ("simulated", "Where balances come from: `simulated`, `rpc` or `alchemy`."),
    "SYNC_CHAINS": (DEFAULT_CHAINS, "Supported EVM chain ids, comma separated; a request naming no chain syncs all."),
    "SYNC_COOLDOWN_SECONDS": ("60", "A wallet synced successfully more recently than this is not synced again unless forced."),
    "SYNC_MAX_ATTEMPTS": ("3", "Attempts in all per operation (first try included) for transient errors."),
    "SYNC_READ_TRIES": ("4", "Tries in all of one idempotent read (a chain, an HTTP request) inside an attempt, while its deadline allows; 1: no retry inside the attempt."),
    "SYNC_READ_BACKOFF_MS": ("50", "Base of the jittered exponential wait between those tries."),
    "SYNC_READ_BACKOFF_CAP_MS": ("2000", "Cap of that wait (a Retry-After from the server may ask for longer)."),
    "SYNC_RETRY_MIN_BACKOFF_MS": ("2000", "First retry delay; doubles per attempt, with jitter."),
    "SYNC_RETRY_MAX_BACKOFF_MS": ("60000", "Cap of the retry delay."),
    "SYNC_TIME_LIMIT_MS": ("60000", "Time limit of one attempt (Dramatiq TimeLimit)."),
    "SYNC_MAX_AGE_MS": ("3600000", "A message older than this is not started (Dramatiq AgeLimit); the operation fails as `expired`."),
    "SYNC_INFRA_MAX_RETRIES": ("20", "Retries of a message whose attempt could not even run because Redis or PostgreSQL was away (they do not use up SYNC_MAX_ATTEMPTS)."),
    "SYNC_LEASE_MS": ("8000", "Lease of a running operation in Redis, renewed every third of it; a crashed worker's operations are taken over once it lapses."),
    "RECONCILE_INTERVAL_S": ("2", "How often the reconciler runs (in one worker at a time) to re-enqueue operations whose message or worker was lost."),
    "CIRCUIT_FAILURE_RATE": ("0.5", "Share of transient failures of one chain's provider, over CIRCUIT_WINDOW_S, that opens its circuit breaker."),
    "CIRCUIT_MIN_CALLS": ("20", "Fewest calls of one chain's provider in CIRCUIT_WINDOW_S before its failure rate is judged."),
    "CIRCUIT_WINDOW_S": ("30", "The window, in seconds, over which a circuit's failure rate is measured."),
    "CIRCUIT_RESET_S": ("20", "How long an open circuit stays open before one trial call."),
    "BROKER_HEARTBEAT_TIMEOUT_MS": ("8000", "Dramatiq: a worker silent this long is dead and its in-flight messages are requeued (a live one speaks to Redis every second or so)."),
    "BROKER_MAINTENANCE_CHANCE": ("50000", "Dramatiq: per million broker commands, how many also run queue maintenance (dead-worker recovery)."),
    "QUARANTINE_MAX": ("10000", "Undecodable messages kept in the quarantine list (oldest dropped first)."),
    "WORKER_PROCESSES": ("2", "Worker processes started by the Procfile's `worker`."),
    "WORKER_THREADS": ("8", "Threads per worker process."),
    "DB_POOL_MAX": ("8", "Largest size of each process's PostgreSQL pool."),
    "DB_CONNECT_TIMEOUT_S": ("5", "Timeout of a PostgreSQL connection attempt."),
    "DB_STATEMENT_TIMEOUT_MS": ("10000", "statement_timeout of every worker and producer SQL statement."),
    "REDIS_TIMEOUT_S": ("5", "Socket and connect timeout of every Redis call."),
    "HTTP_TIMEOUT_S": ("10", "Timeout of every provider and price HTTP call."),
    "SIMULATED_LATENCY_MS": ("100", "Simulated provider: latency of one chain call."),
    "SIMULATED_FAILURE_RATE": ("0", "Simulated provider: fraction (0..1) of chain calls that fail transiently."),
    "SIMULATED_SEED": ("", "Simulated provider: seed of its failure draws, for a reproducible failure sequence (empty: random)."),
    "SIMULATED_TOKENS_PER_CHAIN": ("12", "Simulated provider: at most this many tokens held per chain."),
    "RPC_URLS": ("", "`rpc` provider: JSON-RPC endpoint per chain, `chain_id=url` pairs separated by commas."),
    "RPC_TOKENS": ("", "`rpc` provider: ERC-20 contracts to read per chain, `chain_id=0xaddr 0xaddr` pairs separated by commas."),
    "ALCHEMY_API_KEY": ("", "`alchemy` provider: API key (secret)."),
    "ALCHEMY_URLS": ("", "`alchemy` provider: base URL per chain, `chain_id=url` pairs; the key is appended as a path segment."),
    "PRICE_API_URL": ("", "Base URL of the HTTP price API used by `rpc` and `alchemy` (CoinGecko-style `simple/token_price`)."),
    "PRICE_API_KEY": ("", "Key of the price API (secret), sent as a header."),
    "PRICE_API_PLAN": ("auto", "Which CoinGecko key PRICE_API_KEY is: `pro` (header x-cg-pro-api-key, base https://pro-api.coingecko.com/api/v3), `demo` (x-cg-demo-api-key, base https://api.coingecko.com/api/v3), or `auto`: `pro` when PRICE_API_URL's host starts with `pro-api.`, else `demo`."),
    "PRICE_API_REQUESTS_PER_S": ("0.5", "Rate budget of the price API shared by all workers, requests per second (0: unlimited). CoinGecko's demo plan allows 30 a minute."),
    "PROVIDER_REQUESTS_PER_S": ("25", "Rate budget of the rpc or alchemy provider shared by all workers, HTTP requests per second (0: unlimited)."),
    "PROVIDER_UNITS_PER_S": ("0", "Compute units per second of the alchemy provider shared by all workers (0: unlimited); set it to your plan's throughput."),
    "PRICE_CACHE_TTL_S": ("300", "How long a price is cached in Redis."),
    "SCHEDULER_CRON": ("* * * * *", "Cron (periodiq, minute resolution) of the tick that requests `low` syncs of stale tracked wallets."),
    "SCHEDULER_ACTIVE_WINDOW_S": ("86400", "A tracked wallet whose owner requested a sync within this window is `active` (refreshed every SCHEDULER_ACTIVE_INTERVAL_S)."),
    "SCHEDULER_ACTIVE_INTERVAL_S": ("300", "An `active` wallet is stale once its last successful sync is this old."),
    "SCHEDULER_IDLE_INTERVAL_S": ("86400", "Any other active tracked wallet is stale once its last successful sync is this old."),
    "SCHEDULER_BACKOFF_BASE_S": ("300", "A wallet whose last N syncs failed waits min(cap, base x 2^(N-1)) after its last failure before the next scheduled one."),
    "SCHEDULER_BACKOFF_CAP_S": ("86400", "Cap of that backoff."),
    "SCHEDULER_BATCH_SIZE": ("500", "Syncs requested per batch (one `request_syncs` call) within a tick."),
    "SCHEDULER_MAX_PER_TICK": ("5000", "At most this many syncs requested per tick."),
    "SCHEDULER_BACKLOG_LIMIT": ("10000", "A tick requests at most this minus the `sync_low` backlog (waiting + delayed messages): nothing while the backlog is at or above it."),
    "HOUSEKEEPING_CRON": ("*/10 * * * *", "Cron of housekeeping: retention of the audit trail and tick records, cleanup of the project's Redis keys, a reconciler pass."),
    "SYNC_RETENTION_DAYS": ("30", "Finished `sync_operations` rows older than this are deleted by housekeeping (never unfinished ones)."),
    "SCHEDULER_TICK_RETENTION_DAYS": ("7", "`scheduler_ticks` rows older than this are deleted by housekeeping."),
    "LOG_LEVEL": ("INFO", "Log level of every process."),
    "LOG_FORMAT": ("json", "Format of the log lines of every process: `json` (one object per line; a job's lines carry its operation id, message id and attempt) or `text`."),
    "API_TOKENS": ("", "HTTP API: bearer tokens accepted on /api/v1 and the web process's /metrics (secret; comma separated, each 24 to 256 characters; empty: the API answers 401 to every request)."),
    "API_RATE_LIMIT": ("600/minute", "HTTP API: requests allowed per token, as `N/second`, `N/minute` or `N/hour`, counted in Redis across web processes (`off`: no limit); past it, 429."),
    "API_MAX_BODY_BYTES": ("16384", "HTTP API: largest request body accepted; a larger one gets 413."),
    "METRICS_ENABLED": ("true", "Prometheus metrics: the workers' (Dramatiq's and the project's, served on METRICS_HOST:METRICS_PORT) and the web process's (`/metrics`)."),
    "METRICS_HOST": ("127.0.0.1", "Address the workers' metrics server binds to (`0.0.0.0` for a Prometheus on another machine)."),
    "METRICS_PORT": ("9191", "Port of the workers' metrics server (one per `dramatiq` command)."),
    "METRICS_DIR": ("", "Directory of the metrics files of a machine's processes (Prometheus multiprocess mode; empty: `portfolio-sync-metrics` in the system's temp directory); each `dramatiq` or web run uses a fresh subdirectory, removed once the run has ended."),
    "EVENTS_MAXLEN": ("100000", "Completion events kept in the Redis Stream `<SYNC_NAMESPACE>:events` (trimmed approximately; `0`: no events are written)."),
}

PROVIDERS = ("simulated", "rpc", "alchemy")
_SECRET_VARIABLES = ("ALCHEMY_API_KEY", "PRICE_API_KEY", "DASHBOARD_PASSWORD")
_URL_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<password>[^@/\s]+)@")


class ConfigError(ValueError):
    """A configuration variable is missing or invalid; the message names it."""


@dataclasses.dataclass(frozen=True)
class Settings:
    redis_url: str = dataclasses.field(repr=False)
    database_url: str = dataclasses.field(repr=False)
    port: int
    dashboard_host: str
    dashboard_username: str
    dashboard_password: str = dataclasses.field(repr=False)
    dashboard_protected_elsewhere: bool
    dashboard_database_url: str = dataclasses.field(repr=False)
    dashboard_db_pool_max: int
    dashboard_statement_timeout_ms: int
    dashboard_refresh_s: int
    namespace: str
    provider: str
    chains: tuple[int, ...]
    cooldown_seconds: int
    max_attempts: int
    retry_min_backoff_ms: int
    retry_max_backoff_ms: int
    time_limit_ms: int
    max_age_ms: int
    infra_max_retries: int
    lease_ms: int
    reconcile_interval_s: int
    circuit_failure_rate: float
    circuit_min_calls: int
    circuit_window_s: int
    circuit_reset_s: int
    broker_heartbeat_timeout_ms: int
    broker_maintenance_chance: int
    quarantine_max: int
    worker_processes: int
    worker_threads: int
    db_pool_max: int
    db_connect_timeout_s: int
    db_statement_timeout_ms: int
    redis_timeout_s: float
    http_timeout_s: float
    simulated_latency_ms: int
    simulated_failure_rate: float
    simulated_seed: int | None
    simulated_tokens_per_chain: int
    rpc_urls: Mapping[int, str] = dataclasses.field(repr=False)
    rpc_tokens: Mapping[int, tuple[str, ...]]
    alchemy_api_key: str = dataclasses.field(repr=False)
    alchemy_urls: Mapping[int, str] = dataclasses.field(repr=False)
    price_api_url: str = dataclasses.field(repr=False)
    price_api_key: str = dataclasses.field(repr=False)
    price_cache_ttl_s: int
    price_api_plan: str
    price_api_requests_per_s: float
    provider_requests_per_s: float
    provider_units_per_s: float
    read_tries: int
    read_backoff_ms: int
    read_backoff_cap_ms: int
    log_level: str
    scheduler_cron: str
    scheduler_active_window_s: int
    scheduler_active_interval_s: int
    scheduler_idle_interval_s: int
    scheduler_backoff_base_s: int
    scheduler_backoff_cap_s: int
    scheduler_batch_size: int
    scheduler_max_per_tick: int
    scheduler_backlog_limit: int
    housekeeping_cron: str
    sync_retention_days: int
    scheduler_tick_retention_days: int
    # Operating it (actors.cli, dashboard.api, actors.metrics, actors.events, actors.logs).
    log_format: str = "json"
    api_tokens: tuple[str, ...] = dataclasses.field(default=(), repr=False)
    api_rate_limit: tuple[int, str] | None = (600, "minute")  # (requests, per second|minute|hour), None: off
    api_max_body_bytes: int = 16384
    metrics_enabled: bool = True
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 9191
    metrics_dir: str = ""
    events_maxlen: int = 100000

    @property
    def redis_url_display(self) -> str:
        return redact_url(self.redis_url)

    @property
    def database_url_display(self) -> str:
        return redact_url(self.database_url)

    @functools.cached_property
    def _secrets(self) -> tuple[str, ...]:
        found = {self.alchemy_api_key, self.price_api_key, self.dashboard_password}
        found.update(self.api_tokens)
        for url in (self.redis_url, self.database_url, self.dashboard_database_url):
            found.update(_url_passwords(url))
        # A provider's URL often carries its key in the path (/v3/<key>) or the query (?apikey=...):
        # every long path segment and query value of those URLs counts as secret.
        for url in (self.price_api_url, *self.rpc_urls.values(), *self.alchemy_urls.values()):
            parts = urlsplit(url)
            found.update(_url_passwords(url))
            found.update(seg for seg in parts.path.split("/") if len(seg) >= _KEY_LIKE)
            found.update(v for _k, v in parse_qsl(parts.query) if len(v) >= _KEY_LIKE)
        # Longest first, so a secret containing another is removed whole.
        return tuple(sorted((s for s in found if len(s) >= 4), key=len, reverse=True))

    def redact(self, text: str) -> str:
        """Return ``text`` with every configured secret and URL password replaced by ``***``."""
        text = scrub_url_passwords(text)
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text


#: Path segments and query values at least this long in a provider URL are treated as keys.
_KEY_LIKE = 12


def _url_passwords(url: str) -> set[str]:
    """The password of ``url``, as user info or as a ``password`` query parameter."""
    parts = urlsplit(url)
    found = {v for k, v in parse_qsl(parts.query) if k.lower() in ("password", "pass", "pwd")}
    if parts.password:
        found.add(parts.password)
    return found


def scrub_url_passwords(text: str) -> str:
    """``text`` with the password of every ``scheme://user:password@`` in it replaced by ``***``."""
    return _URL_USERINFO.sub(r"\g<scheme>\g<user>:***@", text)


def redact_url(url: str) -> str:
    """``url`` with its password (user info or ``password`` query parameter) replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is not None:
        netloc = f"{parts.username or ''}:***@{parts.hostname or ''}"
        if parts.port:
            netloc += f":{parts.port}"
        parts = parts._replace(netloc=netloc)
    query = parse_qsl(parts.query, keep_blank_values=True)
    if any(k.lower() in ("password", "pass", "pwd") for k, _v in query):
        parts = parts._replace(query=urlencode(
            [(k, "***" if k.lower() in ("password", "pass", "pwd") else v) for k, v in query], safe="*"))
    return urlunsplit(parts)


def load(environ: Mapping[str, str] | None = None) -> Settings:
    """Read and validate every variable of ``VARIABLES`` from ``environ`` (default ``os.environ``)."""
    env = os.environ if environ is None else environ

    def raw(name: str) -> str:
        value = env.get(name)
        return VARIABLES[name][0] if value is None or value.strip() == "" else value.strip()

    def integer(name: str, low: int, high: int) -> int:
        text = raw(name)
        try:
            value = int(text)
        except ValueError:
            raise ConfigError(f"{name} must be an integer, got {text!r}") from None
        if not low <= value <= high:
            raise ConfigError(f"{name} must be between {low} and {high}, got {value}")
        return value

    def fraction(name: str) -> float:
        text = raw(name)
        try:
            value = float(text)
        except ValueError:
            raise ConfigError(f"{name} must be a number between 0 and 1, got {text!r}") from None
        if not 0.0 <= value <= 1.0:
            raise ConfigError(f"{name} must be between 0 and 1, got {value}")
        return value

    def positive_fraction(name: str) -> float:
        value = fraction(name)
        if value == 0:
            raise ConfigError(f"{name} must be above 0, got {value}")
        return value

    def rate(name: str) -> float:
        text = raw(name)
        try:
            value = float(text)
        except ValueError:
            raise ConfigError(f"{name} must be a number of requests per second, got {text!r}") from None
        if not 0.0 <= value <= 1_000_000:  # also refuses NaN
            raise ConfigError(f"{name} must be between 0 and 1000000, got {text!r}")
        return value

    def choice(name: str, allowed: tuple[str, ...]) -> str:
        value = raw(name).strip().lower()
        if value not in allowed:
            raise ConfigError(f"{name} must be one of {', '.join(allowed)}, got {raw(name)!r}")
        return value

    def url(name: str, schemes: tuple[str, ...], *, required: bool = True) -> str:
        value = raw(name)
        if not value and not required:
            return ""
        scheme = urlsplit(value).scheme
        if scheme not in schemes:
            raise ConfigError(f"{name} must be a URL starting with {' or '.join(s + '://' for s in schemes)}, "
                              f"got {redact_url(value)!r}")
        return value

    def chain_id(name: str, text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise ConfigError(f"{name}: {text!r} is not a chain id") from None
        if not 1 <= value <= 2**53:
            raise ConfigError(f"{name}: chain id {value} is out of range")
        return value

    def pairs(name: str) -> dict[int, str]:
        result: dict[int, str] = {}
        for item in filter(None, (p.strip() for p in raw(name).split(","))):
            key, sep, value = item.partition("=")
            if not sep or not value.strip():
                raise ConfigError(f"{name}: expected chain_id=value, got {scrub_url_passwords(item)!r}")
            result[chain_id(name, key.strip())] = value.strip()
        return result

    provider = raw("SYNC_PROVIDER").lower()
    if provider not in PROVIDERS:
        raise ConfigError(f"SYNC_PROVIDER must be one of {', '.join(PROVIDERS)}, got {provider!r}")

    chains = tuple(dict.fromkeys(chain_id("SYNC_CHAINS", c.strip()) for c in raw("SYNC_CHAINS").split(",") if c.strip()))
    if not chains:
        raise ConfigError("SYNC_CHAINS must name at least one chain id")

    namespace = raw("SYNC_NAMESPACE")
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", namespace):
        raise ConfigError(f"SYNC_NAMESPACE must be 1-64 letters, digits, '_', '.' or '-', got {namespace!r}")

    rpc_urls = pairs("RPC_URLS")
    for cid, value in rpc_urls.items():
        if urlsplit(value).scheme not in ("http", "https"):
            raise ConfigError(f"RPC_URLS: the URL of chain {cid} must start with http:// or https://")
    rpc_tokens: dict[int, tuple[str, ...]] = {}
    for cid, value in pairs("RPC_TOKENS").items():
        tokens = tuple(t.lower() for t in value.split())
        for token in tokens:
            if not re.fullmatch(r"0x[0-9a-f]{40}", token):
                raise ConfigError(f"RPC_TOKENS: {token!r} (chain {cid}) is not a 0x-prefixed 20-byte address")
        rpc_tokens[cid] = tokens
    alchemy_urls = pairs("ALCHEMY_URLS")

    if provider == "rpc":
        missing = [c for c in chains if c not in rpc_urls]
        if missing:
            raise ConfigError(f"RPC_URLS has no endpoint for chain(s) {', '.join(map(str, missing))} of SYNC_CHAINS")
    if provider == "alchemy":
        if not raw("ALCHEMY_API_KEY"):
            raise ConfigError("ALCHEMY_API_KEY is required when SYNC_PROVIDER=alchemy")
        missing = [c for c in chains if c not in alchemy_urls]
        if missing:
            raise ConfigError(f"ALCHEMY_URLS has no base URL for chain(s) {', '.join(map(str, missing))} of SYNC_CHAINS")

    def cron(name: str) -> str:
        text = " ".join(raw(name).split())
        problem = cron_problem(text)
        if problem:
            raise ConfigError(f"{name} must be a cron expression (minute hour day-of-month month day-of-week, "
                              f"or @hourly/@daily/...): {problem}, got {text!r}")
        return text

    backoff_base = integer("SCHEDULER_BACKOFF_BASE_S", 1, 30 * 86400)
    backoff_cap = integer("SCHEDULER_BACKOFF_CAP_S", 1, 30 * 86400)
    if backoff_cap < backoff_base:
        raise ConfigError(f"SCHEDULER_BACKOFF_CAP_S ({backoff_cap}) must not be below "
                          f"SCHEDULER_BACKOFF_BASE_S ({backoff_base})")

    dashboard_username = raw("DASHBOARD_USERNAME") if env.get("DASHBOARD_USERNAME") else ""
    dashboard_password = env.get("DASHBOARD_PASSWORD") or ""  # not stripped: every character counts
    if bool(dashboard_username) != bool(dashboard_password):
        raise ConfigError("DASHBOARD_USERNAME and DASHBOARD_PASSWORD must be set together (or neither)")
    if dashboard_password and len(dashboard_password) < 12:
        raise ConfigError("DASHBOARD_PASSWORD must be at least 12 characters long")
    if ":" in dashboard_username:
        raise ConfigError("DASHBOARD_USERNAME must not contain ':' (HTTP basic auth splits on it)")
    dashboard_host = raw("DASHBOARD_HOST")
    if not re.fullmatch(r"[A-Za-z0-9.:\[\]_-]{1,255}", dashboard_host):
        raise ConfigError(f"DASHBOARD_HOST must be a host name or IP address, got {dashboard_host!r}")
    protected_elsewhere = raw("DASHBOARD_PROTECTED_ELSEWHERE").lower()
    if protected_elsewhere not in ("true", "false", "1", "0", "yes", "no"):
        raise ConfigError(f"DASHBOARD_PROTECTED_ELSEWHERE must be true or false, got {protected_elsewhere!r}")

    log_format = raw("LOG_FORMAT").lower()
    if log_format not in ("json", "text"):
        raise ConfigError(f"LOG_FORMAT must be json or text, got {log_format!r}")
    api_tokens = tuple(dict.fromkeys(t.strip() for t in (env.get("API_TOKENS") or "").split(",") if t.strip()))
    for position, token in enumerate(api_tokens, 1):
        if not 24 <= len(token) <= 256 or not re.fullmatch(r"[\x21-\x7e]+", token) or token.startswith("Bearer"):
            # The token itself is never repeated in the message.
            raise ConfigError(f"API_TOKENS: token {position} must be 24 to 256 printable characters without "
                              f"spaces, got {len(token)} characters")
    rate_text = raw("API_RATE_LIMIT").lower().replace(" ", "")
    rate_match = re.fullmatch(r"(\d{1,9})/(second|minute|hour)", rate_text)
    if rate_text in ("off", "0"):
        api_rate_limit = None
    elif rate_match and int(rate_match[1]) > 0:
        api_rate_limit = (int(rate_match[1]), rate_match[2])
    else:
        raise ConfigError(f"API_RATE_LIMIT must be N/second, N/minute, N/hour or off, got {rate_text!r}")
    metrics_enabled = raw("METRICS_ENABLED").lower()
    if metrics_enabled not in ("true", "false", "1", "0", "yes", "no"):
        raise ConfigError(f"METRICS_ENABLED must be true or false, got {metrics_enabled!r}")
    metrics_host = raw("METRICS_HOST")
    if not re.fullmatch(r"[A-Za-z0-9.:\[\]_-]{1,255}", metrics_host):
        raise ConfigError(f"METRICS_HOST must be a host name or IP address, got {metrics_host!r}")
    metrics_dir = raw("METRICS_DIR")
    if metrics_dir and not os.path.isabs(metrics_dir):
        raise ConfigError(f"METRICS_DIR must be an absolute path, got {metrics_dir!r}")

    log_level = raw("LOG_LEVEL").upper()
    if log_level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise ConfigError(f"LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL, got {log_level!r}")

    return Settings(
        redis_url=url("REDIS_URL", ("redis", "rediss", "unix")),
        database_url=url("DATABASE_URL", ("postgresql", "postgres")),
        port=integer("PORT", 1, 65535),
        dashboard_host=dashboard_host,
        dashboard_username=dashboard_username,
        dashboard_password=dashboard_password,
        dashboard_protected_elsewhere=protected_elsewhere in ("true", "1", "yes"),
        dashboard_database_url=url("DASHBOARD_DATABASE_URL", ("postgresql", "postgres"), required=False),
        dashboard_db_pool_max=integer("DASHBOARD_DB_POOL_MAX", 1, 100),
        dashboard_statement_timeout_ms=integer("DASHBOARD_STATEMENT_TIMEOUT_MS", 100, 600_000),
        dashboard_refresh_s=integer("DASHBOARD_REFRESH_S", 2, 86400),
        namespace=namespace,
        provider=provider,
        chains=chains,
        cooldown_seconds=integer("SYNC_COOLDOWN_SECONDS", 0, 86400 * 30),
        max_attempts=integer("SYNC_MAX_ATTEMPTS", 1, 50),
        retry_min_backoff_ms=integer("SYNC_RETRY_MIN_BACKOFF_MS", 1, 86_400_000),
        retry_max_backoff_ms=integer("SYNC_RETRY_MAX_BACKOFF_MS", 1, 86_400_000),
        time_limit_ms=integer("SYNC_TIME_LIMIT_MS", 100, 86_400_000),
        max_age_ms=integer("SYNC_MAX_AGE_MS", 1000, 7 * 86_400_000),
        infra_max_retries=integer("SYNC_INFRA_MAX_RETRIES", 0, 1000),
        lease_ms=integer("SYNC_LEASE_MS", 1000, 3_600_000),
        reconcile_interval_s=integer("RECONCILE_INTERVAL_S", 1, 3600),
        circuit_failure_rate=positive_fraction("CIRCUIT_FAILURE_RATE"),
        circuit_min_calls=integer("CIRCUIT_MIN_CALLS", 1, 100_000),
        circuit_window_s=integer("CIRCUIT_WINDOW_S", 1, 3600),
        circuit_reset_s=integer("CIRCUIT_RESET_S", 1, 3600),
        broker_heartbeat_timeout_ms=integer("BROKER_HEARTBEAT_TIMEOUT_MS", 1000, 3_600_000),
        broker_maintenance_chance=integer("BROKER_MAINTENANCE_CHANCE", 0, 1_000_000),
        quarantine_max=integer("QUARANTINE_MAX", 1, 10_000_000),
        worker_processes=integer("WORKER_PROCESSES", 1, 256),
        worker_threads=integer("WORKER_THREADS", 1, 1024),
        db_pool_max=integer("DB_POOL_MAX", 1, 1000),
        db_connect_timeout_s=integer("DB_CONNECT_TIMEOUT_S", 1, 300),
        db_statement_timeout_ms=integer("DB_STATEMENT_TIMEOUT_MS", 10, 3_600_000),
        redis_timeout_s=integer("REDIS_TIMEOUT_S", 1, 300),
        http_timeout_s=integer("HTTP_TIMEOUT_S", 1, 300),
        simulated_latency_ms=integer("SIMULATED_LATENCY_MS", 0, 600_000),
        simulated_failure_rate=fraction("SIMULATED_FAILURE_RATE"),
        simulated_seed=integer("SIMULATED_SEED", 0, 2**63) if raw("SIMULATED_SEED") else None,
        simulated_tokens_per_chain=integer("SIMULATED_TOKENS_PER_CHAIN", 1, 1000),
        rpc_urls=rpc_urls,
        rpc_tokens=rpc_tokens,
        alchemy_api_key=raw("ALCHEMY_API_KEY") if env.get("ALCHEMY_API_KEY") else "",
        alchemy_urls=alchemy_urls,
        price_api_url=url("PRICE_API_URL", ("http", "https"), required=False),
        price_api_key=raw("PRICE_API_KEY") if env.get("PRICE_API_KEY") else "",
        price_cache_ttl_s=integer("PRICE_CACHE_TTL_S", 1, 86400 * 7),
        price_api_plan=choice("PRICE_API_PLAN", ("auto", "pro", "demo")),
        price_api_requests_per_s=rate("PRICE_API_REQUESTS_PER_S"),
        provider_requests_per_s=rate("PROVIDER_REQUESTS_PER_S"),
        provider_units_per_s=rate("PROVIDER_UNITS_PER_S"),
        read_tries=integer("SYNC_READ_TRIES", 1, 20),
        read_backoff_ms=integer("SYNC_READ_BACKOFF_MS", 1, 60_000),
        read_backoff_cap_ms=integer("SYNC_READ_BACKOFF_CAP_MS", 1, 600_000),
        log_level=log_level,
        scheduler_cron=cron("SCHEDULER_CRON"),
        scheduler_active_window_s=integer("SCHEDULER_ACTIVE_WINDOW_S", 60, 365 * 86400),
        scheduler_active_interval_s=integer("SCHEDULER_ACTIVE_INTERVAL_S", 60, 365 * 86400),
        scheduler_idle_interval_s=integer("SCHEDULER_IDLE_INTERVAL_S", 60, 365 * 86400),
        scheduler_backoff_base_s=backoff_base,
        scheduler_backoff_cap_s=backoff_cap,
        scheduler_batch_size=integer("SCHEDULER_BATCH_SIZE", 1, 10_000),
        scheduler_max_per_tick=integer("SCHEDULER_MAX_PER_TICK", 1, 1_000_000),
        scheduler_backlog_limit=integer("SCHEDULER_BACKLOG_LIMIT", 1, 100_000_000),
        housekeeping_cron=cron("HOUSEKEEPING_CRON"),
        sync_retention_days=integer("SYNC_RETENTION_DAYS", 1, 36500),
        scheduler_tick_retention_days=integer("SCHEDULER_TICK_RETENTION_DAYS", 1, 36500),
        log_format=log_format,
        api_tokens=api_tokens,
        api_rate_limit=api_rate_limit,
        api_max_body_bytes=integer("API_MAX_BODY_BYTES", 256, 10_485_760),
        metrics_enabled=metrics_enabled in ("true", "1", "yes"),
        metrics_host=metrics_host,
        metrics_port=integer("METRICS_PORT", 1, 65535),
        metrics_dir=metrics_dir,
        events_maxlen=integer("EVENTS_MAXLEN", 0, 100_000_000),
    )


#: The named schedules periodiq understands, and the bounds of the five cron fields.
_CRON_NAMES = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
_CRON_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12), ("day of week", 0, 7))
_CRON_ITEM = re.compile(r"(?:\*|(?P<start>\d+)(?:-(?P<end>\d+))?)(?:/(?P<step>\d+))?")
_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def cron_problem(text: str) -> str | None:
    """What is wrong with the cron expression ``text`` (as periodiq reads it), or ``None`` if nothing."""
    if text.startswith("@"):
        return None if text in _CRON_NAMES else f"unknown schedule name (known: {', '.join(_CRON_NAMES)})"
    fields = text.split()
    if len(fields) != 5:
        return f"expected 5 fields, got {len(fields)}"
    for (label, low, high), field in zip(_CRON_FIELDS, fields):
        if label == "day of week":
            for number, day in enumerate(_WEEKDAYS):
                field = field.lower().replace(day, str(number))
        for item in field.split(","):
            match = _CRON_ITEM.fullmatch(item)
            if not match:
                return f"{label} {item!r} is not *, N, N-M, */S or N-M/S"
            start, end, step = match["start"], match["end"], match["step"]
            for value in filter(None, (start, end)):
                if not low <= int(value) <= high:
                    return f"{label} {value} is outside {low}-{high}"
            if start and end and int(end) < int(start):
                return f"{label} range {item!r} is empty"
            if step is not None and int(step) == 0:
                return f"{label} step must be at least 1"
    return None


@functools.lru_cache(maxsize=1)
def get() -> Settings:
    """The process-wide settings, loaded on first use."""
    return load()


def markdown_table() -> str:
    """The configuration table of the README, from ``VARIABLES``."""
    lines = ["| Variable | Default | Meaning |", "|---|---|---|"]
    for name, (default, meaning) in VARIABLES.items():
        lines.append(f"| `{name}` | {f'`{default}`' if default else '(empty)'} | {meaning} |")
    return "\n".join(lines)


def write_readme_table(readme: str = "README.md") -> None:
    """Replace the table between the README's config-table markers with :func:`markdown_table`."""
    import pathlib

    path = pathlib.Path(readme)
    text = path.read_text()
    start, end = "<!-- config-table -->\n", "\n<!-- /config-table -->"
    head, rest = text.split(start, 1)
    _old, tail = rest.split(end, 1)
    path.write_text(head + start + markdown_table() + end + tail)


if __name__ == "__main__":
    import sys

    if sys.argv[1:] == ["--write-readme"]:
        write_readme_table()
    else:
        print(markdown_table())
