"""Run a program with its wall clock shifted: ``python -m tests.skewed_clock SECONDS PROGRAM [ARGS...]``
(``-c CODE [ARGS...]`` for Python code).

A host whose clock runs ``SECONDS`` ahead (negative: behind), as far as Python code can tell: ``time.time``,
``time.time_ns`` and ``datetime.datetime.now``/``utcnow`` are shifted; the monotonic clock is not (a host
whose wall clock is off still measures durations right).  Processes the program forks (Dramatiq's worker
processes) inherit the shift.  libfaketime would be the natural tool, but its ``clock_nanosleep`` breaks
Python's ``time.sleep`` (EINVAL with the monotonic clock left alone, a sleep of the shift without).
"""

from __future__ import annotations

import datetime
import runpy
import shutil
import sys
import time


def shift_clock(seconds: float) -> None:
    real_time, real_time_ns, real_datetime = time.time, time.time_ns, datetime.datetime
    delta = datetime.timedelta(seconds=seconds)

    class AnyDatetime(type):
        # Every datetime is one to isinstance(): psycopg and the project build real ones.
        def __instancecheck__(cls, obj):
            return isinstance(obj, real_datetime)

        def __subclasscheck__(cls, sub):
            return issubclass(sub, real_datetime)

    class SkewedDatetime(real_datetime, metaclass=AnyDatetime):
        @classmethod
        def now(cls, tz=None):
            return real_datetime.now(tz) + delta

        @classmethod
        def utcnow(cls):
            return real_datetime.now(datetime.timezone.utc).replace(tzinfo=None) + delta

    time.time = lambda: real_time() + seconds
    time.time_ns = lambda: real_time_ns() + int(seconds * 1e9)
    datetime.datetime = SkewedDatetime


def main() -> None:
    seconds, program, *args = sys.argv[1:]
    shift_clock(float(seconds))
    if program == "-c":
        sys.argv = ["-c", *args[1:]]
        exec(compile(args[0], "<string>", "exec"), {"__name__": "__main__"})
        return
    path = shutil.which(program) or program
    sys.argv = [path, *args]
    runpy.run_path(path, run_name="__main__")


if __name__ == "__main__":
    main()
