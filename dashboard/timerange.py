"""The time ranges the pages share, and the clock they are measured from."""

from __future__ import annotations

import datetime as dt

from storage.analytics import Window

#: key -> (label, span, time-series bucket).  Buckets give 60 to 170 bars per chart.
RANGES: dict[str, tuple[str, dt.timedelta, dt.timedelta]] = {
    "1h": ("1 h", dt.timedelta(hours=1), dt.timedelta(minutes=1)),
    "6h": ("6 h", dt.timedelta(hours=6), dt.timedelta(minutes=5)),
    "24h": ("24 h", dt.timedelta(hours=24), dt.timedelta(minutes=15)),
    "7d": ("7 d", dt.timedelta(days=7), dt.timedelta(hours=1)),
    "30d": ("30 d", dt.timedelta(days=30), dt.timedelta(hours=6)),
}
DEFAULT_RANGE = "24h"


def now() -> dt.datetime:
    """The end of every window (tests point it at the seeded data's time)."""
    return dt.datetime.now(dt.timezone.utc)


def window(key: str | None) -> Window:
    """The window of the range ``key`` (an unknown key gives the default), ending now.

    The end is rounded up to the next second, so that callbacks firing together share one window.
    """
    _label, span, bucket = RANGES.get(key or DEFAULT_RANGE, RANGES[DEFAULT_RANGE])
    end = now().replace(microsecond=0) + dt.timedelta(seconds=1)
    return Window(start=end - span, end=end, bucket=bucket)
