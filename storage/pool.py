"""Lazily opened PostgreSQL connection pools, one of each kind per process.

The pool is opened on first use, never at import, so that a Dramatiq worker
process opens its own after the fork instead of inheriting its parent's
sockets.  Every connection carries a connect timeout and a statement timeout:
Dramatiq's TimeLimit cannot interrupt a thread blocked in a socket read.
"""

from __future__ import annotations

import atexit
import os
import threading

from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

import settings as settings_module


class _ProcessPool:
    """A pool opened by ``make`` on first use in each process (again in a forked child), closed at exit."""

    def __init__(self, make):
        self._make = make
        self._lock = threading.Lock()
        self._pool: ConnectionPool | None = None
        self._pid: int | None = None
        atexit.register(self.close)

    def get(self) -> ConnectionPool:
        pool = self._pool
        if pool is not None and self._pid == os.getpid():
            return pool
        with self._lock:
            if self._pool is None or self._pid != os.getpid():
                self._pool = self._make(settings_module.get())
                self._pid = os.getpid()
            return self._pool

    def close(self) -> None:
        with self._lock:
            if self._pool is not None and self._pid == os.getpid():
                self._pool.close()
            self._pool = None


def connection_kwargs(cfg: settings_module.Settings, *, application_name: str) -> dict:
    return {
        "connect_timeout": cfg.database.connect_timeout_s,
        "options": f"-c statement_timeout={cfg.database.statement_timeout_ms}",
        "application_name": application_name,
        "row_factory": dict_row,
        # Dead peers are noticed by the kernel instead of hanging a worker thread.
        "keepalives": 1,
        "keepalives_idle": 30,
        "keepalives_interval": 10,
        "keepalives_count": 3,
    }


#: How long the pool keeps retrying one lost connection before it gives up on that attempt.  psycopg_pool
#: doubles its delay between attempts (1, 2, 4, 8 s...) until then, with no cap: with its default of
#: 300 s, producers went on refusing 8-12 s after PostgreSQL was back.  Given up this early, the next
#: request that has to wait for a connection starts a new attempt at once, with the delay back at 1 s.
RECONNECT_TIMEOUT_S = 4.0


def _open(cfg: settings_module.Settings, url: str, *, max_size: int, kwargs: dict, name: str,
          **options) -> ConnectionPool:
    """A pool with what every pool here shares: one connection kept, the connect timeout, the reconnect timeout."""
    return ConnectionPool(url, min_size=1, max_size=max_size, kwargs=kwargs, timeout=cfg.database.connect_timeout_s,
                          reconnect_timeout=RECONNECT_TIMEOUT_S, name=name, open=True, **options)


def _open_pool(cfg: settings_module.Settings) -> ConnectionPool:
    # Autocommit: every storage function runs one statement per checkout, a transaction of its own
    # anyway; without it, psycopg wraps it in BEGIN and COMMIT, three round trips instead of one.
    kwargs = {**connection_kwargs(cfg, application_name="portfolio-sync"), "autocommit": True}
    return _open(cfg, cfg.database.url, max_size=cfg.database.pool_max, kwargs=kwargs, name="portfolio-sync")


_main = _ProcessPool(_open_pool)


def get_pool() -> ConnectionPool:
    """This process's pool, opened on first call (and again in a forked child)."""
    return _main.get()


#: Connections of a worker process's attempts' pool: a writer each for the starts and the finishes
#: (storage.group_commit), and a start its caller writes alone.
ATTEMPTS_POOL_MAX = 3
#: The longest an attempts' connection, and so its plans, lives (psycopg_pool takes up to 10% off).
ATTEMPTS_PLAN_LIFETIME_S = 60.0


def attempts_connection_kwargs(cfg: settings_module.Settings) -> dict:
    """The connections of the attempts' writes (storage.operations), whose partitions' bounds are written in
    as literals, so one generic plan is the plan every call needs: made once a connection and week instead
    of at every call (half of a finish's time in PostgreSQL went to planning it: docs/performance.md).

    - PostgreSQL's own choice stays custom (it costs a generic plan for ten ids and a custom one for the
      batch's few): it is forced, on connections that run nothing else, since other statements' plans
      depend on their values.
    - A generic plan is made with the statistics of its time, and PostgreSQL remakes it when autovacuum
      analyzes a table.  Made on near-empty tables (a new database, a week's first minute), it could scan
      what has since grown: the rows these statements read and write are found by key, so sequential
      scans are ruled out (the rollup function they fire then reads its small tables by index too, with
      the same results), and a connection, with its plans, lasts at most :data:`ATTEMPTS_PLAN_LIFETIME_S`
      (a process opens about three new ones a minute for it)."""
    kwargs = {**connection_kwargs(cfg, application_name="portfolio-sync-attempts"), "autocommit": True,
              "prepare_threshold": 0}
    kwargs["options"] += " -c plan_cache_mode=force_generic_plan -c enable_seqscan=off"
    return kwargs


def _open_attempts_pool(cfg: settings_module.Settings) -> ConnectionPool:
    return _open(cfg, cfg.database.url, max_size=ATTEMPTS_POOL_MAX, kwargs=attempts_connection_kwargs(cfg),
                 name="portfolio-sync-attempts", max_lifetime=ATTEMPTS_PLAN_LIFETIME_S)


_attempts = _ProcessPool(_open_attempts_pool)


def get_attempts_pool() -> ConnectionPool:
    """This process's pool for the attempts' writes (``start_attempts``, ``finish_attempts``), on first call."""
    return _attempts.get()


def close_pool() -> None:
    """Close this process's pools of the worker's and producers' statements, if it opened them."""
    _main.close()
    _attempts.close()


# The dashboard's own pool: small, read-only, with its own statement timeout.  Every
# transaction it opens is READ ONLY (``default_transaction_read_only``), whatever role
# DASHBOARD_DATABASE_URL names; a read-only role there makes that hold on the server too.
def readonly_connection_kwargs(cfg: settings_module.Settings) -> dict:
    kwargs = connection_kwargs(cfg, application_name="portfolio-sync-dashboard")
    # Aggregates over a month of the audit trail sort up to a million values: in memory, no JIT.
    kwargs["options"] = (f"-c default_transaction_read_only=on -c statement_timeout={cfg.dashboard.statement_timeout_ms}"
                         " -c work_mem=64MB -c jit=off -c TimeZone=UTC")
    kwargs["prepare_threshold"] = None  # custom plans: a search's empty filters fold away
    return kwargs


def _open_readonly_pool(cfg: settings_module.Settings) -> ConnectionPool:
    return _open(cfg, cfg.dashboard.database_url or cfg.database.url, max_size=cfg.dashboard.db_pool_max,
                 kwargs=readonly_connection_kwargs(cfg), name="portfolio-sync-dashboard")


_readonly = _ProcessPool(_open_readonly_pool)


def get_readonly_pool() -> ConnectionPool:
    """This process's read-only pool (the dashboard's), opened on first call."""
    return _readonly.get()
