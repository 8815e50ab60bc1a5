"""Issue 14's combined faults, through ``bench.chaos --combined`` (fewer syncs, so it stays bounded): two
Procfile-style workers, a kill -9 of one's process group, SIGTERM to the other's, corrupt messages in every
queue, a Redis restart (AOF) and a PostgreSQL restart within ~15 s, on servers of the run's own.

Nothing is lost or left inconsistent, and the operations running at the kill end within 15 s of it (p95).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.acceptance

ROOT = Path(__file__).resolve().parents[2]


def test_combined_faults_recover_within_fifteen_seconds(tmp_path):
    done = subprocess.run([sys.executable, "-m", "bench.chaos", "--combined", "--syncs", "160", "--timeout", "150",
                           "--keep-logs", str(tmp_path / "logs")],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["operations_accepted"] == 160
    assert result["operations_lost"] == 0, result
    assert result["operations_inconsistent"] == 0, result
    assert result["running_at_the_kill"] > 0  # the kill did interrupt work
    assert result["recovery_after_kill_s_p95"] < 15, result
    assert done.returncode == 0, done.stderr[-3000:]
