"""Every worker-side proposal together: ``async_commit``, ``fewer_round_trips`` (with ``autocommit``) and
``wakeup``.  Producer side: ``bench.proposals.wakeup`` (and ``batch_enqueue`` for batches)."""

from bench.proposals import async_commit  # noqa: F401  (the pool patches first, before any pool opens)
from bench.proposals import fewer_round_trips  # noqa: F401
from bench.proposals import wakeup  # noqa: F401
