"""Ceiling experiment: the worker thread does not wait for ``finish_attempt``'s commit.

At 100 ms provider latency a sync's actor takes ~120 ms, and ``finish_attempt`` (~7 ms mean, handed to
the group commit's writer and waited for) is the largest step beyond the provider's latency.  Designing a
worker that acks a message only once its finish commits, on another thread, while the worker thread
takes the next message, is days of work (its own acks, retries and shutdown); this module measures what
it could give at most before anyone builds it: a succeeded or partial attempt's finish is handed to a pool
and the attempt goes on as if it had committed.

Never adopt it as it is: the message is acked, the lease released and the wallet freed before the
audit row is final, which breaks the README's guarantee (audit row before the ack).  Worker module
(``dramatiq bench.proposals.finish_behind``; ``bench.run_all --variant finishbehind``).  Measured and not
adopted (docs/performance.md): the steps left on the thread took the time the finish gave back.
"""

from __future__ import annotations

import concurrent.futures

import actors.worker  # noqa: F401  (the broker and the actors, as `dramatiq actors.worker` loads them)
from storage import operations

_behind = concurrent.futures.ThreadPoolExecutor(max_workers=32, thread_name_prefix="finish-behind")
_finish_attempt = operations.finish_attempt


def finish_attempt(operation_id, outcome):
    if outcome.status in ("succeeded", "partial"):
        _behind.submit(_finish_attempt, operation_id, outcome)
        return True
    return _finish_attempt(operation_id, outcome)


operations.finish_attempt = finish_attempt
