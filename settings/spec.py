"""The configuration spec: every environment variable, stated once, in the group that reads it.

Each field of a group below is one variable: its name, the parser that reads its text (and holds
its bounds), its default (as environment text, read by the same parser), its meaning (the README's
table is generated from it), and, for a secret, how to find the strings to keep out of logs.
:class:`Settings` nests the groups: ``settings.redis.url``, ``settings.sync.max_attempts``...
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from collections.abc import Callable, Iterator, Mapping

from .chains import Chain
from .parsers import (HOST, AbsolutePath, BasicAuthUser, Boolean, ChainIds, ChainMetadata, Choice, ConfigError,
                      Cron, Fraction, HostNames, Integer, OrNone, Password, PerChain, PerSecond, Pattern, RateLimit, Text, Tokens, Url,
                      UrlList, any_text, block_number, http_url, token_addresses)
from .redaction import (redact_url, scrub_url_passwords, secret_keys_in_urls, secret_url_password,
                        secret_whole)

#: Where balances come from (SYNC_PROVIDER).
PROVIDERS = ("simulated", "rpc", "alchemy")


@dataclasses.dataclass(frozen=True)
class Variable:
    """One environment variable: how to read it, its default, what it means, whether it is secret."""

    name: str
    parse: Callable[[str, str], typing.Any]
    default: str
    doc: str
    #: For a secret: the strings of its value to redact (see :mod:`settings.redaction`).
    secret: Callable[[typing.Any], set[str]] | None = None
    #: A password keeps its blanks: every character counts.
    strip: bool = True

    def read(self, environ: Mapping[str, str]) -> typing.Any:
        """This variable's value in ``environ``: its default when unset or blank."""
        text = environ.get(self.name)
        if self.strip:
            text = text.strip() if text is not None else None
        return self.parse(self.name, text or self.default)


def var(name: str, parse: Callable[[str, str], typing.Any], *, default: str, doc: str,
        secret: Callable[[typing.Any], set[str]] | None = None, strip: bool = True) -> typing.Any:
    """A group's field read from the variable ``name``; a secret one is left out of ``repr()``."""
    variable = Variable(name, parse, default, doc, secret, strip)
    return dataclasses.field(repr=secret is None, metadata={"variable": variable})


@dataclasses.dataclass(frozen=True)
class Redis:
    """The Redis server: job queues, dedup and cooldown keys, price cache, events."""

    url: str = var(
        "REDIS_URL", Url(("redis", "rediss", "unix")), default="redis://127.0.0.1:6379/0", secret=secret_url_password,
        doc="Redis holding the job queue, dedup/cooldown keys and price cache.")
    timeout_s: int = var(
        "REDIS_TIMEOUT_S", Integer(1, 300), default="5",
        doc="Socket and connect timeout of every Redis call.")

    @property
    def url_display(self) -> str:
        """The URL with its password replaced by ``***``, for messages."""
        return redact_url(self.url)


@dataclasses.dataclass(frozen=True)
class Database:
    """The PostgreSQL database: holdings and the audit trail."""

    url: str = var(
        "DATABASE_URL", Url(("postgresql", "postgres")), default="postgresql://127.0.0.1:5432/portfolio_sync", secret=secret_url_password,
        doc="PostgreSQL holding holdings and the audit trail.")
    pool_max: int = var(
        "DB_POOL_MAX", Integer(1, 1000), default="8",
        doc="Largest size of each process's PostgreSQL pool.")
    connect_timeout_s: int = var(
        "DB_CONNECT_TIMEOUT_S", Integer(1, 300), default="5",
        doc="Timeout of a PostgreSQL connection attempt.")
    statement_timeout_ms: int = var(
        "DB_STATEMENT_TIMEOUT_MS", Integer(10, 3_600_000), default="10000",
        doc="statement_timeout of every worker and producer SQL statement.")

    @property
    def url_display(self) -> str:
        """The URL with its password replaced by ``***``, for messages."""
        return redact_url(self.url)


@dataclasses.dataclass(frozen=True)
class Dashboard:
    """The web process: where it listens, who may see the dashboard, how it reads."""

    port: int = var(
        "PORT", Integer(1, 65535), default="8050",
        doc="Port of the `web` process.")
    host: str = var(
        "DASHBOARD_HOST", HOST, default="127.0.0.1",
        doc="Address the dashboard (`web`) binds to; any other than loopback needs DASHBOARD_USERNAME/PASSWORD or DASHBOARD_PROTECTED_ELSEWHERE=true.")
    username: str = var(
        "DASHBOARD_USERNAME", BasicAuthUser(), default="",
        doc="Dashboard: HTTP basic-auth user name; set with DASHBOARD_PASSWORD to require a login on every page and callback.")
    password: str = var(
        "DASHBOARD_PASSWORD", Password(min_length=12), default="", secret=secret_whole, strip=False,
        doc="Dashboard: HTTP basic-auth password (secret, at least 12 characters).")
    protected_elsewhere: bool = var(
        "DASHBOARD_PROTECTED_ELSEWHERE", Boolean(), default="false",
        doc="Dashboard: `true` if a proxy in front of it authenticates users, so it may listen on a public address without its own login.")
    database_url: str = var(
        "DASHBOARD_DATABASE_URL", Url(("postgresql", "postgres"), required=False), default="", secret=secret_url_password,
        doc="PostgreSQL URL of every dashboard and API read (a replica, a read-only role; empty: DATABASE_URL; reads are read-only either way). A sync not yet on a lagging replica is read from the primary.")
    db_pool_max: int = var(
        "DASHBOARD_DB_POOL_MAX", Integer(1, 100), default="4",
        doc="Dashboard: largest size of each web process's read-only PostgreSQL pool; at least its threads (the Procfile's 4), as a read that waits DB_CONNECT_TIMEOUT_S for a connection gives up.")
    statement_timeout_ms: int = var(
        "DASHBOARD_STATEMENT_TIMEOUT_MS", Integer(100, 600_000), default="5000",
        doc="Dashboard: statement_timeout of its reads.")
    refresh_s: int = var(
        "DASHBOARD_REFRESH_S", Integer(2, 86400), default="30",
        doc="Dashboard: auto-refresh interval of its pages (seconds).")
    allowed_hosts: tuple[str, ...] = var(
        "WEB_ALLOWED_HOSTS", HostNames(), default="localhost,127.0.0.1,::1",
        doc="Web process (dashboard and API): the names a request's `Host` header may carry (comma separated; `.example.com` allows its subdomains; `*` any); any other gets 400, so a page of another site resolving to this address (DNS rebinding) reaches nothing (`/healthz`, `/readyz` and `/metrics` answer any Host, for probes by address).")

    def __post_init__(self) -> None:
        if bool(self.username) != bool(self.password):
            raise ConfigError("DASHBOARD_USERNAME and DASHBOARD_PASSWORD must be set together (or neither)")


@dataclasses.dataclass(frozen=True)
class Sync:
    """Syncing a wallet: what, from where, how often, how many attempts."""

    namespace: str = var(
        "SYNC_NAMESPACE", Pattern(r"[A-Za-z0-9_.-]{1,64}", "1-64 letters, digits, '_', '.' or '-'"), default="portfolio-sync",
        doc="Prefix of every Redis key the project owns (queues included).")
    provider: str = var(
        "SYNC_PROVIDER", Choice(PROVIDERS), default="simulated",
        doc="Where balances come from: `simulated`, `rpc` or `alchemy`.")
    chains: tuple[int, ...] = var(
        "SYNC_CHAINS", ChainIds(), default="1,10,137,8453,42161",
        doc="Supported EVM chain ids, comma separated; a request naming no chain syncs all.")
    chain_table: Mapping[int, Chain] = var(
        "CHAIN_METADATA", ChainMetadata(), default="",
        doc="Chains besides or instead of the defaults (1, 10, 56, 137, 8453, 42161, 43114, 31337), as JSON keyed by chain id: `name`, `native_symbol`, `native_name`, `native_decimals`, `multicall3` (default the canonical address), `price_platform`, `native_price_id`. A chain of SYNC_CHAINS known to neither is refused.")
    cooldown_seconds: int = var(
        "SYNC_COOLDOWN_SECONDS", Integer(0, 86400 * 30), default="60",
        doc="A wallet synced successfully more recently than this is not synced again unless forced.")
    max_attempts: int = var(
        "SYNC_MAX_ATTEMPTS", Integer(1, 50), default="3",
        doc="Attempts in all per operation (first try included) for transient errors.")
    retry_min_backoff_ms: int = var(
        "SYNC_RETRY_MIN_BACKOFF_MS", Integer(1, 86_400_000), default="2000",
        doc="First retry delay; doubles per attempt, with jitter.")
    retry_max_backoff_ms: int = var(
        "SYNC_RETRY_MAX_BACKOFF_MS", Integer(1, 86_400_000), default="60000",
        doc="Cap of the retry delay.")
    time_limit_ms: int = var(
        "SYNC_TIME_LIMIT_MS", Integer(100, 86_400_000), default="60000",
        doc="Time limit of one attempt (Dramatiq TimeLimit).")
    max_age_ms: int = var(
        "SYNC_MAX_AGE_MS", Integer(1000, 7 * 86_400_000), default="3600000",
        doc="A message older than this is not started (Dramatiq AgeLimit); the operation fails as `expired`.")
    infra_max_retries: int = var(
        "SYNC_INFRA_MAX_RETRIES", Integer(0, 1000), default="20",
        doc="Retries of a message whose attempt could not even run because Redis or PostgreSQL was away (they do not use up SYNC_MAX_ATTEMPTS).")
    lease_ms: int = var(
        "SYNC_LEASE_MS", Integer(1000, 3_600_000), default="8000",
        doc="Lease of a running operation in Redis, renewed every third of it; a crashed worker's operations are taken over once it lapses.")
    read_tries: int = var(
        "SYNC_READ_TRIES", Integer(1, 20), default="4",
        doc="Tries in all of one HTTP request to a provider inside an attempt, while its deadline allows; 1: no retry inside the attempt.")
    read_backoff_ms: int = var(
        "SYNC_READ_BACKOFF_MS", Integer(1, 60_000), default="50",
        doc="Base of the jittered exponential wait between those tries.")
    read_backoff_cap_ms: int = var(
        "SYNC_READ_BACKOFF_CAP_MS", Integer(1, 600_000), default="2000",
        doc="Cap of that wait (a Retry-After from the server may ask for longer).")
    read_share_window_ms: int = var(
        "SYNC_READ_SHARE_WINDOW_MS", Integer(0, 3_600_000), default="5000",
        doc="Syncs of one wallet and chain (by any users) within this window share one provider read: a sync may show a read up to this much older than its own start (0: every sync reads for itself).")

    def __post_init__(self) -> None:
        unknown = [c for c in self.chains if c not in self.chain_table]
        if unknown:
            raise ConfigError(f"SYNC_CHAINS names chain(s) {', '.join(map(str, unknown))} with no metadata "
                              f"(name, native coin): define them in CHAIN_METADATA")


@dataclasses.dataclass(frozen=True)
class Reconciler:
    """The reconciler, which re-enqueues operations whose message or worker was lost."""

    interval_s: int = var(
        "RECONCILE_INTERVAL_S", Integer(1, 3600), default="2",
        doc="How often the reconciler runs (in one worker at a time) to re-enqueue operations whose message or worker was lost.")


@dataclasses.dataclass(frozen=True)
class Circuit:
    """The circuit breaker of each chain's provider."""

    failure_rate: float = var(
        "CIRCUIT_FAILURE_RATE", Fraction(positive=True), default="0.5",
        doc="Share of transient failures of one chain's provider, over CIRCUIT_WINDOW_S, that opens its circuit breaker.")
    min_calls: int = var(
        "CIRCUIT_MIN_CALLS", Integer(1, 100_000), default="20",
        doc="Fewest calls of one chain's provider in CIRCUIT_WINDOW_S before its failure rate is judged.")
    window_s: int = var(
        "CIRCUIT_WINDOW_S", Integer(1, 3600), default="30",
        doc="The window, in seconds, over which a circuit's failure rate is measured.")
    reset_s: int = var(
        "CIRCUIT_RESET_S", Integer(1, 3600), default="20",
        doc="How long an open circuit stays open before one trial call.")


@dataclasses.dataclass(frozen=True)
class Broker:
    """The Dramatiq Redis broker."""

    heartbeat_timeout_ms: int = var(
        "BROKER_HEARTBEAT_TIMEOUT_MS", Integer(1000, 3_600_000), default="8000",
        doc="Dramatiq: a worker silent this long is dead and its in-flight messages are requeued (a live one speaks to Redis every second or so).")
    maintenance_chance: int = var(
        "BROKER_MAINTENANCE_CHANCE", Integer(0, 1_000_000), default="50000",
        doc="Dramatiq: per million broker commands, how many also run queue maintenance (dead-worker recovery).")
    quarantine_max: int = var(
        "QUARANTINE_MAX", Integer(1, 10_000_000), default="10000",
        doc="Undecodable messages kept in the quarantine list (oldest dropped first).")


@dataclasses.dataclass(frozen=True)
class Worker:
    """The Procfile's `worker` process."""

    processes: int = var(
        "WORKER_PROCESSES", Integer(1, 256), default="2",
        doc="Worker processes started by the Procfile's `worker`.")
    threads: int = var(
        "WORKER_THREADS", Integer(1, 1024), default="8",
        doc="Threads per worker process.")


@dataclasses.dataclass(frozen=True)
class Http:
    """Outgoing HTTP calls (providers and prices)."""

    timeout_s: int = var(
        "HTTP_TIMEOUT_S", Integer(1, 300), default="10",
        doc="Timeout of every provider and price HTTP call.")
    provider_requests_per_s: float = var(
        "PROVIDER_REQUESTS_PER_S", PerSecond(), default="25",
        doc="Rate budget of the rpc or alchemy provider shared by all workers, HTTP requests per second (0: unlimited).")
    provider_units_per_s: float = var(
        "PROVIDER_UNITS_PER_S", PerSecond(), default="0",
        doc="Compute units per second of the alchemy provider shared by all workers (0: unlimited); set it to your plan's throughput.")


@dataclasses.dataclass(frozen=True)
class Simulated:
    """The `simulated` provider."""

    latency_ms: int = var(
        "SIMULATED_LATENCY_MS", Integer(0, 600_000), default="100",
        doc="Simulated provider: latency of one chain call.")
    failure_rate: float = var(
        "SIMULATED_FAILURE_RATE", Fraction(), default="0",
        doc="Simulated provider: fraction (0..1) of chain calls that fail transiently.")
    seed: int | None = var(
        "SIMULATED_SEED", OrNone(Integer(0, 2**63)), default="",
        doc="Simulated provider: seed of its failure draws, for a reproducible failure sequence (empty: random).")
    tokens_per_chain: int = var(
        "SIMULATED_TOKENS_PER_CHAIN", Integer(1, 1000), default="12",
        doc="Simulated provider: at most this many tokens held per chain.")


@dataclasses.dataclass(frozen=True)
class Rpc:
    """The `rpc` provider (JSON-RPC nodes)."""

    urls: Mapping[int, str] = var(
        "RPC_URLS", PerChain(http_url), default="", secret=secret_keys_in_urls,
        doc="`rpc` provider: JSON-RPC endpoint per chain, `chain_id=url` pairs separated by commas.")
    tokens: Mapping[int, tuple[str, ...]] = var(
        "RPC_TOKENS", PerChain(token_addresses), default="",
        doc="`rpc` provider: ERC-20 contracts to read per chain, `chain_id=0xaddr 0xaddr` pairs separated by commas.")
    multicall_batch: int = var(
        "RPC_MULTICALL_BATCH", Integer(1, 10_000), default="300",
        doc="`rpc` provider: most calls in one Multicall3 `aggregate3` (an `eth_call`); more go out as further chunks, all read at one block.")
    multicall_gas: int = var(
        "RPC_MULTICALL_GAS", Integer(1_000_000, 1_000_000_000), default="20000000",
        doc="`rpc` provider: gas budget of one `aggregate3` call, which also bounds its chunk (kept below the `eth_call` gas caps of common nodes).")


@dataclasses.dataclass(frozen=True)
class TokenSources:
    """Which tokens a read looks at besides those configured: token lists, and discovery from the chain."""

    list_urls: tuple[str, ...] = var(
        "TOKEN_LIST_URLS", UrlList(("https", "http", "file")), default="", secret=secret_keys_in_urls,
        doc="Token lists (Uniswap token-list format) read besides the shipped one, space separated `https://`, `http://` or `file://` URLs, e.g. `https://tokens.uniswap.org`; a list that does not validate at start stops the process.")
    list_ttl_s: int = var(
        "TOKEN_LIST_TTL_S", Integer(60, 86400 * 30), default="3600",
        doc="How long a fetched token list is used (and cached in Redis) before it is fetched again; a failed refresh keeps the last good copy.")
    discovery_start_blocks: Mapping[int, int] = var(
        "DISCOVERY_START_BLOCKS", PerChain(block_number), default="",
        doc="`rpc` provider: first block of a wallet's first Transfer-log scan, `chain_id=block` pairs separated by commas (absent: 0, the whole history).")
    discovery_max_block_range: int = var(
        "DISCOVERY_MAX_BLOCK_RANGE", Integer(0, 10**9), default="0",
        doc="`rpc` provider: most blocks per eth_getLogs request of token discovery (0: no limit; a node's range or result cap splits the range anyway).")
    discovery_reorg_blocks: int = var(
        "DISCOVERY_REORG_BLOCKS", Integer(0, 10_000), default="64",
        doc="`rpc` provider: blocks at the end of the previous scan that a later scan reads again, in case the chain reorganised them.")


@dataclasses.dataclass(frozen=True)
class Alchemy:
    """The `alchemy` provider."""

    api_key: str = var(
        "ALCHEMY_API_KEY", Text(), default="", secret=secret_whole,
        doc="`alchemy` provider: API key (secret).")
    urls: Mapping[int, str] = var(
        "ALCHEMY_URLS", PerChain(any_text), default="", secret=secret_keys_in_urls,
        doc="`alchemy` provider: base URL per chain, `chain_id=url` pairs; the key is appended as a path segment.")


@dataclasses.dataclass(frozen=True)
class Prices:
    """The HTTP price API of the `rpc` and `alchemy` providers."""

    api_url: str = var(
        "PRICE_API_URL", Url(("http", "https"), required=False), default="", secret=secret_keys_in_urls,
        doc="Base URL of the HTTP price API used by `rpc` and `alchemy` (CoinGecko-style `simple/token_price`).")
    api_key: str = var(
        "PRICE_API_KEY", Text(), default="", secret=secret_whole,
        doc="Key of the price API (secret), sent as a header.")
    cache_ttl_s: int = var(
        "PRICE_CACHE_TTL_S", Integer(1, 86400 * 7), default="300",
        doc="How long a price is cached in Redis.")
    plan: str = var(
        "PRICE_API_PLAN", Choice(("auto", "pro", "demo")), default="auto",
        doc="Which CoinGecko key PRICE_API_KEY is: `pro` (header x-cg-pro-api-key, base https://pro-api.coingecko.com/api/v3), `demo` (x-cg-demo-api-key, base https://api.coingecko.com/api/v3), or `auto`: `pro` when PRICE_API_URL's host starts with `pro-api.`, else `demo`.")
    requests_per_s: float = var(
        "PRICE_API_REQUESTS_PER_S", PerSecond(), default="0.5",
        doc="Rate budget of the price API shared by all workers, requests per second (0: unlimited). CoinGecko's demo plan allows 30 a minute.")


@dataclasses.dataclass(frozen=True)
class Scheduler:
    """The scheduler's tick, which requests `low` syncs of stale tracked wallets."""

    cron: str = var(
        "SCHEDULER_CRON", Cron(), default="* * * * *",
        doc="Cron (periodiq, minute resolution) of the tick that requests `low` syncs of stale tracked wallets.")
    active_window_s: int = var(
        "SCHEDULER_ACTIVE_WINDOW_S", Integer(60, 365 * 86400), default="86400",
        doc="A tracked wallet whose owner requested a sync within this window is `active` (refreshed every SCHEDULER_ACTIVE_INTERVAL_S).")
    active_interval_s: int = var(
        "SCHEDULER_ACTIVE_INTERVAL_S", Integer(60, 365 * 86400), default="300",
        doc="An `active` wallet is stale once its last successful sync is this old.")
    idle_interval_s: int = var(
        "SCHEDULER_IDLE_INTERVAL_S", Integer(60, 365 * 86400), default="86400",
        doc="Any other active tracked wallet is stale once its last successful sync is this old.")
    backoff_base_s: int = var(
        "SCHEDULER_BACKOFF_BASE_S", Integer(1, 30 * 86400), default="300",
        doc="A wallet whose last N syncs failed waits min(cap, base x 2^(N-1)) after its last failure before the next scheduled one.")
    backoff_cap_s: int = var(
        "SCHEDULER_BACKOFF_CAP_S", Integer(1, 30 * 86400), default="86400",
        doc="Cap of that backoff.")

    def __post_init__(self) -> None:
        if self.backoff_cap_s < self.backoff_base_s:
            raise ConfigError(f"SCHEDULER_BACKOFF_CAP_S ({self.backoff_cap_s}) must not be below "
                              f"SCHEDULER_BACKOFF_BASE_S ({self.backoff_base_s})")
    batch_size: int = var(
        "SCHEDULER_BATCH_SIZE", Integer(1, 10_000), default="500",
        doc="Syncs requested per batch (one `request_syncs` call) within a tick.")
    max_per_tick: int = var(
        "SCHEDULER_MAX_PER_TICK", Integer(1, 1_000_000), default="5000",
        doc="At most this many syncs requested per tick.")
    backlog_limit: int = var(
        "SCHEDULER_BACKLOG_LIMIT", Integer(1, 100_000_000), default="10000",
        doc="A tick requests at most this minus the `sync_low` backlog (waiting + delayed messages): nothing while the backlog is at or above it.")


@dataclasses.dataclass(frozen=True)
class Housekeeping:
    """Housekeeping: retention of the audit trail and tick records, cleanup of Redis keys."""

    cron: str = var(
        "HOUSEKEEPING_CRON", Cron(), default="*/10 * * * *",
        doc="Cron of housekeeping: retention of the audit trail and tick records, cleanup of the project's Redis keys, a reconciler pass.")
    sync_retention_days: int = var(
        "SYNC_RETENTION_DAYS", Integer(1, 36500), default="30",
        doc="Weekly partitions of `sync_operations` wholly older than this are dropped by housekeeping (never one holding an unfinished operation).")
    tick_retention_days: int = var(
        "SCHEDULER_TICK_RETENTION_DAYS", Integer(1, 36500), default="7",
        doc="`scheduler_ticks` rows older than this are deleted by housekeeping.")


@dataclasses.dataclass(frozen=True)
class Logging:
    """The log lines of every process."""

    level: str = var(
        "LOG_LEVEL", Choice(("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"), upper=True), default="INFO",
        doc="Log level of every process.")
    format: str = var(
        "LOG_FORMAT", Choice(("json", "text")), default="json",
        doc="Format of the log lines of every process: `json` (one object per line; a job's lines carry its operation id, message id and attempt) or `text`.")


@dataclasses.dataclass(frozen=True)
class Api:
    """The HTTP API (/api/v1) of the web process."""

    tokens: tuple[str, ...] = var(
        "API_TOKENS", Tokens(min_length=24, max_length=256), default="", secret=secret_whole,
        doc="HTTP API: bearer tokens accepted on /api/v1 and the web process's /metrics (secret; comma separated, each 24 to 256 characters; empty: the API answers 401 to every request).")
    rate_limit: tuple[int, str] | None = var(
        "API_RATE_LIMIT", RateLimit(), default="600/minute",
        doc="HTTP API: requests allowed per token, as `N/second`, `N/minute` or `N/hour`, counted in Redis across web processes (`off`: no limit); past it, 429.")
    max_body_bytes: int = var(
        "API_MAX_BODY_BYTES", Integer(256, 10_485_760), default="16384",
        doc="HTTP API: largest request body accepted; a larger one gets 413.")


@dataclasses.dataclass(frozen=True)
class Metrics:
    """Prometheus metrics."""

    enabled: bool = var(
        "METRICS_ENABLED", Boolean(), default="true",
        doc="Prometheus metrics: the workers' (Dramatiq's and the project's, served on METRICS_HOST:METRICS_PORT) and the web process's (`/metrics`).")
    host: str = var(
        "METRICS_HOST", HOST, default="127.0.0.1",
        doc="Address the workers' metrics server binds to (`0.0.0.0` for a Prometheus on another machine).")
    port: int = var(
        "METRICS_PORT", Integer(1, 65535), default="9191",
        doc="Port of the workers' metrics server (one per `dramatiq` command).")
    dir: str = var(
        "METRICS_DIR", AbsolutePath(), default="",
        doc="Directory of the metrics files of a machine's processes (Prometheus multiprocess mode; empty: `portfolio-sync-metrics` in the system's temp directory); each `dramatiq` or web run uses a fresh subdirectory, removed once the run has ended.")


@dataclasses.dataclass(frozen=True)
class Events:
    """The completion events stream."""

    maxlen: int = var(
        "EVENTS_MAXLEN", Integer(0, 100_000_000), default="100000",
        doc="Completion events kept in the Redis Stream `<SYNC_NAMESPACE>:events` (trimmed approximately; `0`: no events are written).")

@dataclasses.dataclass(frozen=True)
class Settings:
    """Every setting of the process, in groups; :meth:`redact` keeps their secrets out of text."""

    redis: Redis
    database: Database
    dashboard: Dashboard
    sync: Sync
    reconciler: Reconciler
    circuit: Circuit
    broker: Broker
    worker: Worker
    http: Http
    simulated: Simulated
    rpc: Rpc
    tokens: TokenSources
    alchemy: Alchemy
    prices: Prices
    scheduler: Scheduler
    housekeeping: Housekeeping
    logging: Logging
    api: Api
    metrics: Metrics
    events: Events

    def __post_init__(self) -> None:
        chains, provider = self.sync.chains, self.sync.provider
        if provider == "rpc":
            missing = [c for c in chains if c not in self.rpc.urls]
            if missing:
                raise ConfigError(f"RPC_URLS has no endpoint for chain(s) {', '.join(map(str, missing))} "
                                  f"of SYNC_CHAINS")
        if provider == "alchemy":
            if not self.alchemy.api_key:
                raise ConfigError("ALCHEMY_API_KEY is required when SYNC_PROVIDER=alchemy")
            missing = [c for c in chains if c not in self.alchemy.urls]
            if missing:
                raise ConfigError(f"ALCHEMY_URLS has no base URL for chain(s) {', '.join(map(str, missing))} "
                                  f"of SYNC_CHAINS")

    @functools.cached_property
    def _secrets(self) -> tuple[str, ...]:
        found: set[str] = set()
        for group in dataclasses.fields(self):
            values = getattr(self, group.name)
            for field in dataclasses.fields(values):
                secret = field.metadata["variable"].secret
                if secret is not None:
                    found.update(secret(getattr(values, field.name)))
        # Longest first, so a secret containing another is removed whole.
        return tuple(sorted((s for s in found if len(s) >= 4), key=len, reverse=True))

    def redact(self, text: str) -> str:
        """Return ``text`` with every configured secret and URL password replaced by ``***``."""
        text = scrub_url_passwords(text)
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text


#: The group classes, by their attribute on :class:`Settings`, in the spec's order.
GROUPS: dict[str, type] = typing.get_type_hints(Settings)


def variables() -> Iterator[tuple[str, str, Variable]]:
    """Every variable of the spec as ``(group, attribute, variable)``, in the spec's order."""
    for group, cls in GROUPS.items():
        for field in dataclasses.fields(cls):
            yield group, field.name, field.metadata["variable"]
