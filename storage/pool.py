"""One lazily opened PostgreSQL connection pool per process.

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

_lock = threading.Lock()
_pool: ConnectionPool | None = None
_pool_pid: int | None = None


def connection_kwargs(cfg: settings_module.Settings, *, application_name: str) -> dict:
    return {
        "connect_timeout": cfg.db_connect_timeout_s,
        "options": f"-c statement_timeout={cfg.db_statement_timeout_ms}",
        "application_name": application_name,
        "row_factory": dict_row,
        # Dead peers are noticed by the kernel instead of hanging a worker thread.
        "keepalives": 1,
        "keepalives_idle": 30,
        "keepalives_interval": 10,
        "keepalives_count": 3,
    }


def get_pool() -> ConnectionPool:
    """This process's pool, opened on first call (and again in a forked child)."""
    global _pool, _pool_pid
    pool = _pool
    if pool is not None and _pool_pid == os.getpid():
        return pool
    with _lock:
        if _pool is None or _pool_pid != os.getpid():
            cfg = settings_module.get()
            _pool = ConnectionPool(
                cfg.database_url,
                min_size=1,
                max_size=cfg.db_pool_max,
                kwargs=connection_kwargs(cfg, application_name="portfolio-sync"),
                timeout=cfg.db_connect_timeout_s,
                name="portfolio-sync",
                open=True,
            )
            _pool_pid = os.getpid()
        return _pool


def close_pool() -> None:
    """Close this process's pool, if it opened one."""
    global _pool
    with _lock:
        if _pool is not None and _pool_pid == os.getpid():
            _pool.close()
        _pool = None



# The dashboard's own pool: small, read-only, with its own statement timeout.  Every
# transaction it opens is READ ONLY (``default_transaction_read_only``), whatever role
# DASHBOARD_DATABASE_URL names; a read-only role there makes that hold on the server too.
_readonly_pool: ConnectionPool | None = None
_readonly_pid: int | None = None


def readonly_connection_kwargs(cfg: settings_module.Settings) -> dict:
    kwargs = connection_kwargs(cfg, application_name="portfolio-sync-dashboard")
    # Aggregates over a month of the audit trail sort up to a million values: in memory, no JIT.
    kwargs["options"] = (f"-c default_transaction_read_only=on -c statement_timeout={cfg.dashboard_statement_timeout_ms}"
                         " -c work_mem=64MB -c jit=off -c TimeZone=UTC")
    kwargs["prepare_threshold"] = None  # custom plans: a search's empty filters fold away
    return kwargs


def get_readonly_pool() -> ConnectionPool:
    """This process's read-only pool (the dashboard's), opened on first call."""
    global _readonly_pool, _readonly_pid
    pool = _readonly_pool
    if pool is not None and _readonly_pid == os.getpid():
        return pool
    with _lock:
        if _readonly_pool is None or _readonly_pid != os.getpid():
            cfg = settings_module.get()
            _readonly_pool = ConnectionPool(
                cfg.dashboard_database_url or cfg.database_url,
                min_size=1,
                max_size=cfg.dashboard_db_pool_max,
                kwargs=readonly_connection_kwargs(cfg),
                timeout=cfg.db_connect_timeout_s,
                name="portfolio-sync-dashboard",
                open=True,
            )
            _readonly_pid = os.getpid()
        return _readonly_pool


def close_readonly_pool() -> None:
    """Close this process's read-only pool, if it opened one."""
    global _readonly_pool
    with _lock:
        if _readonly_pool is not None and _readonly_pid == os.getpid():
            _readonly_pool.close()
        _readonly_pool = None


atexit.register(close_readonly_pool)

atexit.register(close_pool)
