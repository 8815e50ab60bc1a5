from __future__ import annotations

import pytest

from tests.processes import WorkerProcess


@pytest.fixture
def start_worker(database, redis_client, tmp_path):
    """Start ``dramatiq actors`` processes (``start_worker(env={...})``); all are stopped after the test,
    and the run's queues are emptied so no message outlives its test."""
    started: list[WorkerProcess] = []

    def start(*, processes: int = 1, threads: int = 4, env: dict[str, str] | None = None) -> WorkerProcess:
        worker = WorkerProcess(tmp_path / f"worker-{len(started)}.log", processes=processes, threads=threads, env=env)
        started.append(worker)
        return worker.wait_ready()

    yield start
    for worker in started:
        worker.stop()
    import actors

    actors.broker.flush_all()
