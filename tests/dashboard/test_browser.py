"""The dashboard in a real (headless) Chromium, on the seeded audit trail: the numbers a person reads."""

from __future__ import annotations

import base64
import datetime as dt
import urllib.error
import urllib.parse
import urllib.request

import psycopg
import pytest
from dash.testing.wait import until
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from dashboard import access
from storage import analytics

from .conftest import PREFIX, window
from .test_deadletters import failed_sync

pytestmark = pytest.mark.integration


def scalar(url: str, sql: str, *params):
    with psycopg.connect(url) as conn:
        return conn.execute(sql, params).fetchone()[0]


def count_in(url: str, key: str, condition: str = "true") -> int:
    w = window(key)
    return scalar(url, f"SELECT count(*) FROM sync_operations WHERE enqueued_at >= %s AND enqueued_at < %s "
                       f"AND user_id LIKE %s AND {condition}", w.start, w.end, PREFIX + "%")


def visit(duo, path: str, range_label: str | None = "24 h") -> None:
    """Open ``path`` with the time range ``range_label`` (the choice persists across pages, as for a person)."""
    duo.driver.get(duo.server_url.rstrip("/") + path)
    if range_label:
        pick_range(duo, range_label)


def pick_range(duo, label: str) -> None:
    duo.wait_for_element("#time-range", timeout=30)
    duo.driver.find_element(By.XPATH, f"//*[@id='time-range']//label[normalize-space()='{label}']").click()


def trace_count(duo, graph_id: str) -> int:
    return duo.driver.execute_script(
        f"var g = document.querySelector('#{graph_id} .js-plotly-plot'); return g && g.data ? g.data.length : -1;")


def type_into(duo, selector: str, text: str) -> None:
    element = duo.find_element(selector)
    element.clear()
    element.send_keys(text, Keys.ENTER)


def test_overview_shows_the_windows_numbers(dashboard, seeded):
    duo = dashboard
    visit(duo, "/")
    syncs = count_in(seeded, "24h")
    failures = count_in(seeded, "24h", "status = 'failed'")
    duo.wait_for_text_to_equal("#kpi-syncs", f"{syncs:,}", timeout=30)
    duo.wait_for_text_to_equal("#kpi-failures", f"{failures:,}")
    finished = count_in(seeded, "24h", "status IN ('succeeded', 'failed')")
    duo.wait_for_text_to_equal("#kpi-success_rate", f"{(finished - failures) / finished * 100:.1f} %")
    statuses = scalar(seeded, "SELECT count(DISTINCT status) FROM sync_operations WHERE enqueued_at >= %s "
                              "AND enqueued_at < %s AND user_id LIKE %s", window("24h").start, window("24h").end,
                      PREFIX + "%")
    until(lambda: trace_count(duo, "overview-throughput") == statuses, timeout=20)
    until(lambda: trace_count(duo, "overview-chains") == 3, timeout=20)  # success rate, p50, p95
    assert "2024-02-29" in duo.find_element("#window-note").text

    # another time range: every number follows
    pick_range(duo, "7 d")
    duo.wait_for_text_to_equal("#kpi-syncs", f"{count_in(seeded, '7d'):,}", timeout=30)
    assert not duo.get_logs(), duo.get_logs()


def test_users_table_filter_and_drill_down(dashboard, seeded):
    duo = dashboard
    visit(duo, "/users")
    w = analytics.users_window(window("24h"))  # yesterday (UTC) and today so far, as the page says
    assert w.start.hour == 0
    duo.wait_for_contains_text("#users-range", f"since {w.start:%Y-%m-%d} 00:00 UTC", timeout=30)
    top_user, top_syncs = psycopg.connect(seeded).execute(
        "SELECT user_id, count(*) FROM sync_operations WHERE enqueued_at >= %s AND enqueued_at < %s "
        "AND user_id LIKE %s GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 1", (w.start, w.end, PREFIX + "%")).fetchone()
    first_cell = '#users-table td[data-dash-column="user_id"]'
    duo.wait_for_text_to_equal(first_cell, top_user, timeout=30)
    # Waited for too: a table still showing another window's counts can have the same top user.
    duo.wait_for_text_to_equal('#users-table td[data-dash-column="syncs"]', f"{top_syncs:,}", timeout=30)

    # server-side filter: users whose id contains "-0004"
    expected = scalar(seeded, "SELECT count(DISTINCT user_id) FROM sync_operations WHERE enqueued_at >= %s "
                              "AND enqueued_at < %s AND user_id LIKE %s", w.start, w.end, "%-0004%")
    type_into(duo, "#users-filter", "-0004")
    duo.wait_for_text_to_equal("#users-count", f"{expected:,} users", timeout=20)
    user = duo.find_element(first_cell).text
    assert "-0004" in user

    # a click on the row opens the drill-down below
    duo.find_element(first_cell).click()
    until(lambda: duo.find_element("#user-id").get_attribute("value") == user, timeout=20)
    user_syncs = scalar(seeded, "SELECT count(*) FROM sync_operations WHERE user_id = %s AND enqueued_at >= %s "
                                "AND enqueued_at < %s", user, w.start, w.end)
    until(lambda: f"{user_syncs:,}" in duo.find_element("#user-cards").text, timeout=20)
    until(lambda: trace_count(duo, "user-timeline") >= 1, timeout=20)
    until(lambda: trace_count(duo, "user-values") >= 1, timeout=20)
    holdings = scalar(seeded, "SELECT count(DISTINCT (chain_id, symbol, token_address)) FROM holdings "
                              "WHERE user_id = %s", user)
    until(lambda: len(duo.find_elements("#user-holdings-table tbody tr")) == holdings + 1, timeout=20)  # + header


def test_operations_search_and_record(dashboard, seeded):
    duo = dashboard
    visit(duo, "/operations")
    w = window("24h")
    user = scalar(seeded, "SELECT user_id FROM sync_operations WHERE enqueued_at >= %s AND enqueued_at < %s "
                          "AND user_id LIKE %s AND status = 'failed' ORDER BY enqueued_at DESC LIMIT 1",
                  w.start, w.end, PREFIX + "%")
    total = scalar(seeded, "SELECT count(*) FROM sync_operations WHERE user_id = %s AND enqueued_at >= %s "
                           "AND enqueued_at < %s", user, w.start, w.end)
    type_into(duo, "#ops-user", user)
    duo.wait_for_text_to_equal("#ops-count", f"{total:,} operations", timeout=30)
    type_into(duo, "#ops-error", "simulated")
    failed = scalar(seeded, "SELECT count(*) FROM sync_operations WHERE user_id = %s AND enqueued_at >= %s "
                            "AND enqueued_at < %s AND status = 'failed'", user, w.start, w.end)
    duo.wait_for_text_to_equal("#ops-count", f"{failed:,} operations", timeout=20)
    op_id = duo.find_element('#ops-table td[data-dash-column="operation_id"]').text
    duo.find_element('#ops-table td[data-dash-column="status"]').click()
    until(lambda: op_id in duo.find_element("#ops-record").text, timeout=20)
    assert "error_code" in duo.find_element("#ops-record").text

    # an operation id finds it whatever the other fields and the window say
    for selector in ("#ops-user", "#ops-error"):
        duo.find_element(selector).clear()
        duo.find_element(selector).send_keys(Keys.ENTER)
    type_into(duo, "#ops-operation-id", op_id)
    duo.wait_for_text_to_equal("#ops-count", "1 operations", timeout=20)


def test_queues_page_is_live(dashboard, redis_client):
    duo = dashboard
    from actors.services import context

    broker = context.broker()
    visit(duo, "/queues")
    dead = sum(redis_client.zcard(f"{broker.namespace}:{q}.XQ") for q in ("sync_high", "sync", "sync_low", "periodic"))
    duo.wait_for_text_to_equal("#q-kpi-dead", f"{dead:,}", timeout=30)
    duo.wait_for_text_to_equal("#q-kpi-quarantined", f"{redis_client.llen(f'{broker.namespace}:quarantine'):,}")
    until(lambda: len(duo.find_elements("#queues-table tbody tr")) >= 5, timeout=20)  # header + 4 queues
    assert "sync_high" in duo.find_element("#queues-table").text
    until(lambda: "No scheduler tick" in duo.find_element("#scheduler-note").text
          or "Last tick" in duo.find_element("#scheduler-note").text, timeout=20)


def test_redrive_a_dead_letter_from_the_page(dashboard, seeded, user_id, monkeypatch):
    from actors.services import context
    from dashboard import timerange

    # Dead letters live a week in Redis (the broker's maintenance drops older ones), so this page
    # is looked at with the real clock.
    now = dt.datetime.now(dt.timezone.utc)
    monkeypatch.setattr(timerange, "now", lambda: now)
    duo = dashboard
    broker = context.broker()
    op_id = failed_sync(broker, user_id, at=now - dt.timedelta(minutes=5))
    visit(duo, f"/dead-letters?user={user_id}")
    duo.wait_for_text_to_equal("#dl-count", "1 dead letters", timeout=30)
    assert duo.find_element('#dl-table td[data-dash-column="operation_id"]').text == op_id
    assert duo.find_element('#dl-table td[data-dash-column="error_code"]').text == "provider_rejected"
    duo.find_element("#dl-table input[type=checkbox]").click()
    duo.find_element("#dl-redrive-selected").click()
    until(lambda: "Re-driven: 1, skipped: 0" in duo.find_element("#dl-result").text, timeout=20)
    duo.wait_for_text_to_equal("#dl-count", "0 dead letters", timeout=20)
    new = scalar(seeded, "SELECT count(*) FROM sync_operations WHERE user_id = %s AND trigger = 'redrive' "
                         "AND status = 'queued'", user_id)
    assert new == 1

    # all matching: the dry run first, then exactly what it counted
    for minutes in (3, 2):
        failed_sync(broker, user_id, at=now - dt.timedelta(minutes=minutes))
    visit(duo, f"/dead-letters?user={user_id}")
    duo.wait_for_text_to_equal("#dl-count", "2 dead letters", timeout=20)
    assert not duo.find_element("#dl-redrive-all").is_enabled()
    duo.find_element("#dl-dry-run").click()
    until(lambda: "2 dead letters match" in duo.find_element("#dl-result").text, timeout=20)
    until(lambda: duo.find_element("#dl-redrive-all").is_enabled(), timeout=10)
    duo.find_element("#dl-redrive-all").click()
    until(lambda: "Re-driven: 2, skipped: 0" in duo.find_element("#dl-result").text, timeout=20)
    duo.wait_for_text_to_equal("#dl-count", "0 dead letters", timeout=20)
    assert scalar(seeded, "SELECT count(*) FROM sync_operations WHERE user_id = %s AND trigger = 'redrive'",
                  user_id) == 3


def test_login_wall(dashboard, dash_app):
    """With a login configured the live server challenges a request without the credentials (or with wrong
    ones) and gives nothing of the dashboard; a browser sending them gets the pages and their callbacks.

    The refusals are read over HTTP, not in Chromium: a headless renderer meeting a challenge it cannot
    answer waits for a dialog nobody sees, until the driver's 300 s page-load timeout."""
    duo = dashboard
    user, password = "analyst", "correct horse battery"
    base = duo.server_url.rstrip("/")

    def basic(secret: str) -> dict[str, str]:
        return {"Authorization": "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()}

    def status_of(path: str, headers: dict[str, str]) -> tuple[int, str, str]:
        request = urllib.request.Request(base + path, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, response.headers.get("WWW-Authenticate", ""), response.read().decode()
        except urllib.error.HTTPError as refused:
            return refused.code, refused.headers.get("WWW-Authenticate", ""), refused.read().decode()

    # A dashboard page left open by an earlier test would meet the wall with its next callback or script,
    # and Chromium would wait on that challenge's dialog.
    duo.driver.get("about:blank")
    access.set_credentials(dash_app.server, user, password)
    try:
        for path, headers in (("/", {}), ("/users", basic("not the password")), ("/_dash-layout", {})):
            code, challenge, body = status_of(path, headers)
            assert code == 401 and challenge.startswith("Basic "), (path, code, challenge)
            assert "react-entry-point" not in body and "kpi-syncs" not in body, path
        assert status_of("/", basic(password))[0] == 200

        # A person answers the challenge once and the browser keeps the login for the site, sending it
        # with every later request: credentials in the address do the same without a dialog.  The page
        # itself is then opened without them, as a page holding them in its URL cannot fetch its callbacks.
        duo.driver.get(base.replace("://", f"://{user}:{urllib.parse.quote(password)}@", 1) + "/")
        visit(duo, "/", None)
        # until() gives up at the first exception: wait for the page's layout before reading its KPI.
        duo.wait_for_element("#kpi-syncs", timeout=30)
        until(lambda: duo.find_element("#kpi-syncs").text not in ("", "…"), timeout=30)
        assert duo.find_element("#kpi-syncs").text != "n/a"  # the callbacks got through too
    finally:
        access.set_credentials(dash_app.server, None, None)
