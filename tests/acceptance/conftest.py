from __future__ import annotations

import pytest

from tests.processes import WorkerProcess


@pytest.fixture
def start_worker(clean_queues, tmp_path):
    """Start ``dramatiq actors.worker`` processes (``start_worker(env={...})``); all are stopped after the test,
    before ``clean_queues`` empties the queues and ends what the test left unfinished."""
    started: list[WorkerProcess] = []

    def start(*, processes: int = 1, threads: int = 4, env: dict[str, str] | None = None) -> WorkerProcess:
        worker = WorkerProcess(tmp_path / f"worker-{len(started)}.log", processes=processes, threads=threads, env=env)
        started.append(worker)
        return worker.wait_ready()

    yield start
    for worker in started:
        worker.stop()
