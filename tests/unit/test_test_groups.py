"""tests/conftest.py's GROUPS under pytest-xdist: every test of a group runs on one worker.  xdist's own
grouping once stopped working silently (its mark renames node ids, which pytest 9 no longer reads)."""

from __future__ import annotations

import collections
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_a_group_runs_on_one_worker_and_the_rest_spreads():
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-n", "2", "-v", "-p", "no:cacheprovider",
         "tests/dashboard/test_page_limits.py", "tests/unit/test_ids.py"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    workers = collections.defaultdict(set)
    for worker, nodeid in re.findall(r"\[(gw\d+)\] \[\s*\d+%\] PASSED (\S+)", run.stdout):
        workers[nodeid.startswith("tests/dashboard/")].add(worker)
    assert len(workers[True]) == 1, workers  # the group on one worker
    # The others are not held to the group's worker (whether that worker also gets one of them is a race).
    assert workers[False] - workers[True], workers
