"""Worker module for an A/B of storage.group_commit: the shipped worker, every audit write on its own.

    .venv/bin/python -m bench.project throughput --n 3000 --threads 32 --worker-module bench.without_group_commit
    .venv/bin/python -m bench.project throughput --n 3000 --threads 32            # the shipped worker, to compare
"""

from storage import operations

operations._starts = lambda params: operations._start_batch([params])[0]
operations._finishes = lambda params: operations._finish_batch([params])[0]

import actors.worker  # noqa: E402,F401  (the broker and the actors, as `dramatiq actors.worker` loads them)
