"""The dashboard's tests: a seeded audit trail at a fixed time, and a headless Chromium.

The seed (harness.seed) writes ``SEED_ROWS`` operations of ``SEED_USERS`` users named
``dashtest-*`` over the week before ``ANCHOR``, a date long past: no other test's operation
falls in the dashboard's windows, whose clock (``dashboard.timerange.now``) is pointed at
``ANCHOR``.  Everything seeded is deleted when the package's tests end, so that no later test
(retention, scheduling) meets it.

Browsers: Debian's ``/usr/bin/chromium`` and ``/usr/bin/chromedriver`` (``./dev test`` installs
them), always headless.  The fixtures here build Dash's own test objects (``dash.testing``) with
headless Chrome options, so they work whether or not dash's pytest plugin is loaded (``-p no:dash``
disables it and with it the ``--headless`` option); for ``dash_duo`` itself the
``pytest_setup_options`` hook below gives the same headless options.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil

import psycopg
import pytest

from harness import seed
from harness.ports import free_port

PREFIX = "dashtest-"
ANCHOR = dt.datetime(2024, 3, 1, 12, 0, tzinfo=dt.timezone.utc)
SEED_ROWS = 20_000
SEED_USERS = 200
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROME_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-dev-shm-usage", "--window-size=1400,1000")


@pytest.fixture(scope="package")
def seeded(database):
    """The seeded audit trail (operations, tracked wallets, holdings); removed at the end."""
    with psycopg.connect(database, autocommit=True) as conn:
        seed.seed_operations(conn, rows=SEED_ROWS, users=SEED_USERS, end=ANCHOR, days=7, prefix=PREFIX)
        seed.seed_tracked_wallets(conn, prefix=PREFIX)
        seed.seed_holdings(conn, prefix=PREFIX)
        for table in ("sync_operations", "tracked_wallets", "holdings"):
            conn.execute(f"VACUUM (ANALYZE) {table}")  # as autovacuum would have: visibility map and statistics
    try:
        yield database
    finally:
        with psycopg.connect(database, autocommit=True) as conn:
            for table in ("holdings", "tracked_wallets", "sync_operations"):
                conn.execute(f"DELETE FROM {table} WHERE user_id LIKE %s", (PREFIX + "%",))


@pytest.fixture(scope="package")
def clock():
    """Point the dashboard's clock at ANCHOR for the package's tests."""
    from dashboard import timerange

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(timerange, "now", lambda: ANCHOR)
        yield ANCHOR


def window(key: str):
    from dashboard import timerange

    original = timerange.now
    try:
        timerange.now = lambda: ANCHOR
        return timerange.window(key)
    finally:
        timerange.now = original


def chrome_options():
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    return options


@pytest.hookimpl(optionalhook=True)
def pytest_setup_options():
    """dash's plugin asks this hook for the webdriver options of ``dash_duo``/``dash_br``."""
    return chrome_options()


@pytest.fixture(scope="package")
def browser_available():
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not (os.path.exists(p) or shutil.which(p))]
    try:
        import selenium  # noqa: F401
        from dash.testing.composite import DashComposite  # noqa: F401
    except ImportError as exc:
        missing.append(f"dash[testing] ({exc})")
    if missing:
        message = f"browser tests need {', '.join(missing)} (./dev test installs them)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="package")
def dash_app(seeded, clock, redis_client):
    """The dashboard app, its clock at ANCHOR, on the seeded data; its pages do not refresh themselves
    while a test reads them (a refresh re-renders the tables a test is clicking in)."""
    from dashboard import app as dashboard_app

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(dashboard_app, "REFRESH_MS", 3_600_000)
        yield dashboard_app


@pytest.fixture(scope="package")
def dashboard(browser_available, dash_app, tmp_path_factory):
    """A headless Chromium on the dashboard, served by dash.testing's threaded runner on a free port."""
    from dash.testing.application_runners import ThreadedRunner
    from dash.testing.composite import DashComposite

    from storage import pool

    # dash.testing stops its server by raising SystemExit in every thread started after it: the pools'
    # threads, opened first, are not among them (else they died with it, as CI's warnings showed).
    pool.get_pool(), pool.get_readonly_pool()
    with ThreadedRunner() as runner, DashComposite(
            server=runner, browser="Chrome", headless=True, options=[chrome_options()],
            download_path=str(tmp_path_factory.mktemp("downloads")), percy_run=False, wait_timeout=20) as duo:
        duo.start_server(dash_app.app, port=free_port())
        yield duo
