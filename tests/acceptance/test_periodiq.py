"""Two real ``periodiq actors.worker`` schedulers and a real ``dramatiq actors.worker`` worker: each tick is enqueued
once, and each stale wallet is requested once per tick.

periodiq has minute resolution: both schedulers fire the current minute's tick as they start, then the
next one on the same alarm, so this test waits for at most about a minute and a quarter.
"""

from __future__ import annotations

import datetime as dt
import re
import time

import pytest

from tests.processes import PeriodiqProcess

pytestmark = pytest.mark.acceptance


@pytest.fixture
def start_periodiq(clean_queues, tmp_path):
    started: list[PeriodiqProcess] = []

    def start(env: dict[str, str] | None = None) -> PeriodiqProcess:
        process = PeriodiqProcess(tmp_path / f"periodiq-{len(started)}.log", env=env)
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


def seed(db_conn, user: str, first: int, count: int) -> set[str]:
    """Track ``count`` never-synced wallets of ``user``: all stale."""
    db_conn.execute("""INSERT INTO tracked_wallets (user_id, wallet_address, chain_ids)
                       SELECT %s, '0x' || lpad(to_hex(i), 40, '0'), '{1}'
                       FROM generate_series(%s::int, %s::int) AS i""",
                    (user, first, first + count - 1))
    return {"0x" + f"{i:040x}" for i in range(first, first + count)}


def scheduled(db_conn, user: str) -> dict[str, int]:
    rows = db_conn.execute("""SELECT wallet_address, count(*) AS n FROM sync_operations
                              WHERE user_id = %s AND trigger = 'scheduled' GROUP BY wallet_address""",
                           (user,)).fetchall()
    return {r["wallet_address"]: r["n"] for r in rows}


def wait_for_ticks(db_conn, count: int, timeout: float) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ticks = db_conn.execute("""SELECT * FROM scheduler_ticks WHERE schedule = 'resync_stale_wallets'
                                   AND finished_at IS NOT NULL ORDER BY tick_at""").fetchall()
        if len(ticks) >= count:
            return ticks
        time.sleep(0.2)
    raise AssertionError(f"fewer than {count} ticks ran within {timeout:.0f} s")


def test_two_schedulers_request_each_stale_wallet_once_per_tick(start_worker, start_periodiq, db_conn, user_id):
    db_conn.execute("DELETE FROM tracked_wallets")
    db_conn.execute("DELETE FROM scheduler_ticks")
    first = seed(db_conn, user_id, 1, 40)
    worker = start_worker(threads=4)
    env = {"HOUSEKEEPING_CRON": "0 0 1 1 *"}  # keep this test to the resync tick
    # Both start-up ticks must fall in one minute, and the second batch be seeded before the next one:
    # 20 s at least for two schedulers to start on a loaded machine.
    if dt.datetime.now().second >= 40:
        time.sleep(61 - dt.datetime.now().second)
    schedulers = [start_periodiq(env), start_periodiq(env)]
    for process in schedulers:
        process.wait_ready()

    # Both fire the current minute at start-up: one tick, each stale wallet requested once.
    (startup,) = wait_for_ticks(db_conn, 1, timeout=30)
    assert scheduled(db_conn, user_id) == {w: 1 for w in first}
    assert (startup["stale_count"], startup["requested_count"]) == (40, 40)

    # The next minute both wake on the same alarm: one tick again, for the wallets stale by then.
    second = seed(db_conn, user_id, 1001, 40)
    ticks = wait_for_ticks(db_conn, 2, timeout=75)
    assert len(ticks) == 2 and ticks[1]["tick_at"] - ticks[0]["tick_at"] == dt.timedelta(minutes=1)
    requested = scheduled(db_conn, user_id)
    assert requested == {w: 1 for w in first | second}, {w: n for w, n in requested.items() if n != 1}
    assert ticks[1]["requested_count"] == 40

    # Each tick was won by exactly one scheduler; the other logged that it lost to the winner (on the
    # second tick at least: on a slow machine the second scheduler may come up after the first minute).
    logs = "\n".join(p.log for p in schedulers)
    for tick in ticks:
        minute = f"{tick['tick_at'].astimezone(dt.timezone.utc):%H:%M}Z"
        won = re.findall(rf"Tick {minute} of resync_stale_wallets: won by this scheduler \((\S+)\)", logs)
        lost = re.findall(rf"Tick {minute} of resync_stale_wallets: lost to scheduler (\S+);", logs)
        assert len(won) == 1 and set(lost) <= set(won), (minute, won, lost)
        assert tick["scheduler_id"] == won[0]
    assert len(lost) == 1
    assert all(p.proc.poll() is None for p in schedulers)
    # And the worker got one message per tick (the tick's row would hide a second one).
    assert worker.log.count(":resync_stale_wallets() scheduled at") == 2
