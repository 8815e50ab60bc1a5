"""Test isolation: every run gets its own PostgreSQL database and its own Redis key namespace.

The environment is set here, before any test imports ``actors`` (which reads
its settings at import): the database named in ``DATABASE_URL`` (or the local
default) only tells which server to use; the run creates
``portfolio_sync_test_<random>`` on it and drops it at the end, and deletes
every Redis key under its namespace.

With pytest-xdist (``./dev test`` runs ``-n 2``) every worker is a process of its
own that imports this module, so each worker is a run of its own: its own
``RUN_ID``, database and namespace.  :data:`GROUPS` keeps some tests on one worker.
"""

from __future__ import annotations

import os
import uuid
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
import redis
from psycopg import sql
from psycopg.conninfo import make_conninfo

import settings

RUN_ID = uuid.uuid4().hex[:10]
#: Tests that xdist runs on one worker (with ``-n``, load scheduling), by path prefix, and why.
GROUPS = {
    # One seeded audit trail (20,000 operations) and one headless Chromium per worker that
    # runs any of them: keeping them together seeds once and starts one browser.
    "tests/dashboard/": "dashboard",
}
TEST_DATABASE = f"portfolio_sync_test_{RUN_ID}"
NAMESPACE = f"portfolio-sync-test-{RUN_ID}"

_server_url = os.environ.get("DATABASE_URL") or settings.VARIABLES["DATABASE_URL"].default
os.environ.update({
    "DATABASE_URL": urlunsplit(urlsplit(_server_url)._replace(path="/" + TEST_DATABASE)),
    "SYNC_NAMESPACE": NAMESPACE,
    "SYNC_PROVIDER": "simulated",
    "SIMULATED_LATENCY_MS": "10",
    "SIMULATED_FAILURE_RATE": "0",
    "SYNC_RETRY_MIN_BACKOFF_MS": "100",
    "SYNC_RETRY_MAX_BACKOFF_MS": "400",
    # Tests change what a provider answers between two syncs of a wallet; those that test sharing a
    # read between syncs (SYNC_READ_SHARE_WINDOW_MS) turn it on themselves.
    "SYNC_READ_SHARE_WINDOW_MS": "0",
    "LOG_LEVEL": "INFO",
    "METRICS_ENABLED": "false",  # no metrics server per test worker; tests of the metrics turn them on
    # dash.testing serves each request on a thread of its own, and a page asks for its eight figures at
    # once: a connection each, as under gunicorn, whose threads the pool matches (4 and 4 by default).
    "DASHBOARD_DB_POOL_MAX": "8",
})
for _name in ("SIMULATED_SEED", "SYNC_CHAINS", "SYNC_COOLDOWN_SECONDS", "SYNC_MAX_ATTEMPTS", "SYNC_TIME_LIMIT_MS"):
    os.environ.pop(_name, None)


@pytest.hookimpl(tryfirst=True, optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """Schedule :data:`GROUPS` by path.  xdist's own ``xdist_group`` mark renames each item's node id,
    which pytest 9 no longer reads, so the mark alone leaves a group spread over the workers."""
    if config.getvalue("dist") not in ("load", "loadgroup"):
        return None
    from xdist.scheduler import LoadScopeScheduling

    class PathGroupScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return next((group for prefix, group in GROUPS.items() if nodeid.startswith(prefix)), nodeid)

    return PathGroupScheduling(config, log)


def _maintenance_conninfo() -> str:
    return make_conninfo(os.environ["DATABASE_URL"], dbname="postgres", connect_timeout=5)


@pytest.fixture(scope="session")
def database() -> str:
    """The run's own database, with the schema applied; dropped at the end of the run."""
    from storage import migrate, pool

    with psycopg.connect(_maintenance_conninfo(), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(TEST_DATABASE)))
    try:
        migrate.apply_schema(os.environ["DATABASE_URL"], connect_timeout=5)
        yield os.environ["DATABASE_URL"]
    finally:
        pool.close_pool()
        with psycopg.connect(_maintenance_conninfo(), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(TEST_DATABASE)))


@pytest.fixture
def empty_database(database) -> str:
    """Another database on the run's server, empty, for a test to build as it needs (an older schema, a
    replica); dropped after the test."""
    name = f"{TEST_DATABASE}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(_maintenance_conninfo(), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield urlunsplit(urlsplit(database)._replace(path="/" + name))
    finally:
        with psycopg.connect(_maintenance_conninfo(), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="session")
def redis_client() -> redis.Redis:
    """A client of the test Redis; every key of the run's namespace is deleted at the end."""
    client = redis.Redis.from_url(settings.get().redis.url, socket_timeout=5)
    client.ping()
    try:
        yield client
    finally:
        keys = list(client.scan_iter(match=f"{NAMESPACE}*", count=1000))
        for start in range(0, len(keys), 500):
            client.delete(*keys[start:start + 500])
        client.close()


@pytest.fixture
def db_conn(database):
    """A plain autocommit connection to the run's database, for checking what the code wrote."""
    with psycopg.connect(database, autocommit=True, row_factory=psycopg.rows.dict_row) as conn:
        yield conn


@pytest.fixture
def user_id() -> str:
    """A user id no other test uses, so dedup and cooldown keys never collide across tests."""
    return f"user-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def wallet() -> str:
    return "0x" + uuid.uuid4().hex + uuid.uuid4().hex[:8]


@pytest.fixture
def clean_queues(database, redis_client):
    """Empty the run's queues before and after the test, and end the operations it left unfinished,
    so that no message or half-done operation of one test is picked up (by a worker's reconciler,
    say) in another.  Cached prices and circuit breakers, which every worker of the run shares
    through Redis, are reset too (and providers' rate budgets): a circuit a test opened on purpose must not turn away the next
    test's reads, nor one source's cached prices be served to another's test."""
    import actors.worker

    def reset() -> None:
        actors.worker.broker.flush_all()
        keys = [*redis_client.scan_iter(match=f"{NAMESPACE}:price:*", count=1000),
                *redis_client.scan_iter(match=f"{NAMESPACE}:circuit:*", count=1000),
                *redis_client.scan_iter(match=f"{NAMESPACE}:budget:*", count=1000)]
        if keys:
            redis_client.delete(*keys)
        # Before the test too: tests without this fixture (the dashboard's redrives, say) leave operations
        # queued, which this test's worker would otherwise find and run, and count, a pass later.
        with psycopg.connect(database, autocommit=True) as conn:
            conn.execute("UPDATE sync_operations SET status = 'failed', finished_at = now(), "
                         "error_code = 'test_cleanup' WHERE status IN ('queued', 'running', 'retrying')")

    reset()
    yield
    reset()
