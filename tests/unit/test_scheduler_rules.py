"""Pure rules of the scheduler: which tick a periodiq send belongs to, cron validation, tick reasons."""

from __future__ import annotations

import datetime as dt

import periodiq
import pytest
from hypothesis import given
from hypothesis import strategies as st

import settings
from actors.services import scheduler


@pytest.mark.parametrize("scheduled_at, expected", [
    ("2030-05-01T12:00:00+00:00", "2030-05-01T12:00:00+00:00"),
    ("2030-05-01T12:00:59+00:00", "2030-05-01T12:00:00+00:00"),
    ("2030-05-01T14:00:03+02:00", "2030-05-01T12:00:00+00:00"),  # periodiq sends local time
    ("2030-05-01T07:00:00-05:00", "2030-05-01T12:00:00+00:00"),
    ("2030-05-01T12:00:00Z", "2030-05-01T12:00:00+00:00"),
    ("2030-05-01T12:00:00", "2030-05-01T12:00:00+00:00"),  # naive: taken as UTC
])
def test_a_send_belongs_to_its_minute_in_utc(scheduled_at, expected):
    assert scheduler.tick_minute(scheduled_at).isoformat() == expected


@given(st.datetimes(min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2100, 1, 1)),
       st.integers(min_value=-12 * 60, max_value=14 * 60), st.integers(min_value=0, max_value=59))
def test_schedulers_agree_on_the_tick_whatever_their_zone_and_second(moment, offset_min, second):
    minute = moment.replace(second=0, microsecond=0, tzinfo=dt.timezone.utc)
    local = (minute + dt.timedelta(seconds=second)).astimezone(dt.timezone(dt.timedelta(minutes=offset_min)))
    assert scheduler.tick_minute(local.isoformat()) == minute
    assert scheduler.tick_key("ns", "a", scheduler.tick_minute(local.isoformat())) == \
        f"ns:tick:a:{minute:%Y-%m-%dT%H:%M}Z"


@pytest.mark.parametrize("spec", ["* * * * *", "*/10 * * * *", "0 3 * * mon-fri", "5,35 */2 1-15 1,6 0", "@daily"])
def test_valid_crons_are_accepted_and_periodiq_reads_them(spec):
    assert settings.cron_problem(spec) is None
    periodiq.cron(spec)


@pytest.mark.parametrize("env, named", [
    ({"SCHEDULER_CRON": "* * * *"}, "SCHEDULER_CRON must be a cron expression"),
    ({"SCHEDULER_CRON": "60 * * * *"}, "minute 60 is outside 0-59"),
    ({"HOUSEKEEPING_CRON": "*/0 * * * *"}, "HOUSEKEEPING_CRON must be a cron expression"),
    ({"HOUSEKEEPING_CRON": "@reboot"}, "unknown schedule name"),
    ({"SCHEDULER_CRON": "0 0 * * someday"}, "day of week"),
    ({"SCHEDULER_BACKOFF_BASE_S": "600", "SCHEDULER_BACKOFF_CAP_S": "60"},
     "SCHEDULER_BACKOFF_CAP_S (60) must not be below"),
    ({"SCHEDULER_BATCH_SIZE": "0"}, "SCHEDULER_BATCH_SIZE must be between 1 and 10000"),
    ({"SCHEDULER_ACTIVE_INTERVAL_S": "5"}, "SCHEDULER_ACTIVE_INTERVAL_S must be between 60"),
    ({"SCHEDULER_BACKLOG_LIMIT": "lots"}, "SCHEDULER_BACKLOG_LIMIT must be an integer"),
    ({"SYNC_RETENTION_DAYS": "0"}, "SYNC_RETENTION_DAYS must be between 1"),
])
def test_invalid_scheduler_configuration_names_the_variable(env, named):
    with pytest.raises(settings.ConfigError, match=named.replace("(", r"\(").replace(")", r"\)")):
        settings.load(env)


def test_scheduler_defaults():
    cfg = settings.load({})
    assert (cfg.scheduler.cron, cfg.housekeeping.cron) == ("* * * * *", "*/10 * * * *")
    assert (cfg.scheduler.active_window_s, cfg.scheduler.active_interval_s, cfg.scheduler.idle_interval_s) == \
        (86400, 300, 86400)
    assert (cfg.scheduler.backoff_base_s, cfg.scheduler.backoff_cap_s) == (300, 86400)
    assert (cfg.scheduler.batch_size, cfg.scheduler.max_per_tick, cfg.scheduler.backlog_limit) == (500, 5000, 10000)
    assert (cfg.housekeeping.sync_retention_days, cfg.housekeeping.tick_retention_days) == (30, 7)
    assert settings.load({"SCHEDULER_CRON": "  */5   *  * * * "}).scheduler.cron == "*/5 * * * *"


@pytest.mark.parametrize("stale, requested, limited_by, reason", [
    (0, 0, None, "nothing_stale"),
    (5, 5, None, "all_requested"),
    (5, 5, "backlog", "all_requested"),
    (30, 0, "backlog", "backlog_full"),
    (30, 5, "backlog", "backlog_limit"),
    (30, 8, "max_per_tick", "max_per_tick"),
    (3, 2, None, "not_accepted"),
])
def test_a_tick_says_why_it_held_wallets_back(stale, requested, limited_by, reason):
    assert scheduler._reason(stale, requested, limited_by) == reason


def test_the_scheduling_queries_load_with_the_others(tmp_path):
    from storage.queries import QUERIES, load_files

    assert {"select_stale_wallets", "tracked_wallet_health", "tracked_wallet_health_counts", "track_wallet",
            "set_tracked_wallet_status", "untrack_wallet", "claim_tick", "finish_tick", "recent_ticks",
            "count_new_scheduled_operations", "add_operation_partitions", "drop_old_operation_partitions",
            "delete_old_ticks"} <= set(QUERIES)
    assert {"insert_operations", "finish_attempts"} <= set(QUERIES)
    (tmp_path / "a.sql").write_text("-- one --\nSELECT 1;\n")
    (tmp_path / "b.sql").write_text("-- one --\nSELECT 2;\n")
    with pytest.raises(ValueError, match="'one' is defined twice"):
        load_files((str(tmp_path / "a.sql"), str(tmp_path / "b.sql")))
