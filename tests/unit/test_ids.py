import datetime as dt
import time
import uuid

import pytest

from actors.ids import uuid4_string, uuid4_strings, uuid7_strings
from storage import operations


def test_uuid4_strings_are_canonical_random_version_4_uuids():
    made = uuid4_strings(5000) + [uuid4_string()]
    assert len(set(made)) == len(made)
    for text in made:
        parsed = uuid.UUID(text)
        assert str(parsed) == text and parsed.version == 4 and parsed.variant == uuid.RFC_4122


def test_every_random_digit_varies():
    # The 30 hex digits that are neither a dash, the version (4) nor the variant (8, 9, a or b) take many values.
    made = uuid4_strings(2000)
    for position in (i for i in range(36) if i not in (8, 13, 14, 18, 19, 23)):
        assert len({text[position] for text in made}) > 8, position
    assert {text[14] for text in made} == {"4"} and {text[19] for text in made} == set("89ab")


def test_uuid7_strings_are_canonical_version_7_uuids_carrying_this_hosts_milliseconds():
    before = int(time.time() * 1000)
    made = uuid7_strings(5000)
    after = int(time.time() * 1000)
    assert len(set(made)) == len(made)
    for text in made:
        parsed = uuid.UUID(text)
        assert str(parsed) == text and parsed.version == 7 and parsed.variant == uuid.RFC_4122
        assert before <= parsed.int >> 80 <= after
    # The 18 hex digits after the time, the version and the variant digit are random.
    for position in (15, 16, 17, 20, 21, 22, *range(24, 36)):
        assert len({text[position] for text in made}) > 8, position


def test_the_bound_of_a_lookup_is_the_whole_weeks_around_the_times_in_its_ids_with_the_margin():
    new = uuid7_strings(1)[0]
    old = uuid7_at(int(time.time() * 1000) - 3_600_000)  # an hour earlier
    lo, hi = map(dt.datetime.fromisoformat, operations.id_time_bound([new, old, uuid4_string()]))
    # Mondays at 00:00 UTC, the partitions' grid, the fewest weeks that hold the times and their margin.
    assert (lo.weekday(), lo.time(), hi.weekday(), hi.time()) == (0, dt.time(0), 0, dt.time(0))
    assert lo <= _time_of(old) - operations.ID_TIME_MARGIN < lo + dt.timedelta(days=7)
    assert hi - dt.timedelta(days=7) <= _time_of(new) + operations.ID_TIME_MARGIN < hi
    # Ids of one week make one statement text, and so one plan.
    monday = dt.datetime(2026, 11, 30, tzinfo=dt.timezone.utc)
    tuesday, sunday = (uuid7_at(int((monday + dt.timedelta(days=d)).timestamp() * 1000)) for d in (1.5, 5.5))
    assert operations.id_time_bound([tuesday]) == operations.id_time_bound([sunday]) == (
        "2026-11-30T00:00:00+00:00", "2026-12-07T00:00:00+00:00")
    # Within the margin of a week's end, the next week is looked in too.
    late = uuid7_at(int((monday + dt.timedelta(days=6.5)).timestamp() * 1000))
    assert operations.id_time_bound([late]) == ("2026-11-30T00:00:00+00:00", "2026-12-14T00:00:00+00:00")
    # Ids without a time (version 4, as every id made before), or not UUIDs at all: every partition.
    assert operations.id_time_bound([uuid4_string(), "not-a-uuid"]) is operations.EVERY_PARTITION
    # A time no datetime holds is no id of ours.
    assert operations.id_time_bound(["ffffffff-ffff-7fff-bfff-ffffffffffff"]) is operations.EVERY_PARTITION
    # Nor is one whose time a datetime holds but whose week (with the margin) ends past the year 9999.
    assert operations.id_time_bound(["e677c7d3-2400-7000-8000-000000000001"]) is operations.EVERY_PARTITION


def uuid7_at(ms: int) -> str:
    """A version 7 id whose time is ``ms`` (as a producer whose clock said so would make it)."""
    digits = f"{ms:012x}"
    return f"{digits[:8]}-{digits[8:]}{uuid7_strings(1)[0][13:]}"


def _time_of(text: str) -> dt.datetime:
    return dt.datetime.fromtimestamp((uuid.UUID(text).int >> 80) / 1000, dt.timezone.utc)


def test_calls_a_bounded_statement_missed_are_written_again_unbounded_and_fail_alone():
    ids = uuid7_strings(3)
    written = []

    def write(calls, bound):
        written.append(([c[0] for c in calls], bound))
        if bound is operations.EVERY_PARTITION:
            raise RuntimeError("the unbounded statement failed")
        return [c[0] != ids[1] for c in calls]  # the second one lies outside the bound

    results = operations._in_id_partitions([(op_id,) for op_id in ids], write)
    assert results[0] is True and results[2] is True and isinstance(results[1], RuntimeError)
    assert [w[0] for w in written] == [ids, [ids[1]]] and written[0][1] is not operations.EVERY_PARTITION
    # Nothing written by the first statement: the failure is the whole call's, as one statement's would be.
    with pytest.raises(RuntimeError):
        operations._in_id_partitions([(ids[1],)], write)
