"""A throwaway database and Redis namespace for a benchmark run, removed at the end.

Call :func:`enter` before anything imports ``actors`` (its settings are read at import).
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import psycopg
import redis
from psycopg import sql
from psycopg.conninfo import make_conninfo

import settings


@contextlib.contextmanager
def enter(*, keep: str | None = None, **env: str) -> Iterator[str]:
    """Point this process (and its children) at a new database and namespace; yield the run id.

    With ``keep``, the database is named ``keep``, reused if it exists and left in place at the end (a
    benchmark re-measuring a large seeded history need not seed it again); the Redis namespace is still
    the run's own and removed."""
    run_id = uuid.uuid4().hex[:10]
    server = os.environ.get("DATABASE_URL") or settings.VARIABLES["DATABASE_URL"].default
    database = keep or f"portfolio_sync_bench_{run_id}"
    os.environ.update({"DATABASE_URL": urlunsplit(urlsplit(server)._replace(path="/" + database)),
                       "SYNC_NAMESPACE": f"portfolio-sync-bench-{run_id}", **env})
    from storage import migrate

    maintenance = make_conninfo(os.environ["DATABASE_URL"], dbname="postgres", connect_timeout=5)
    migrate.create_database(os.environ["DATABASE_URL"], connect_timeout=5)
    try:
        migrate.apply_schema(os.environ["DATABASE_URL"], connect_timeout=5)
        yield run_id
    finally:
        from storage import pool

        pool.close_pool()
        if keep is None:
            with psycopg.connect(maintenance, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database)))
        client = redis.Redis.from_url(os.environ.get("REDIS_URL") or settings.VARIABLES["REDIS_URL"].default)
        keys = list(client.scan_iter(match=f"portfolio-sync-bench-{run_id}*", count=1000))
        for start in range(0, len(keys), 500):
            client.delete(*keys[start:start + 500])
