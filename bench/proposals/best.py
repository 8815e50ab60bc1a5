"""Every worker-side proposal together: ``async_commit`` and ``fewer_round_trips`` (with ``autocommit``).
Producer side: ``bench.proposals.producer`` (``batch_enqueue``).  The event-driven consumers, once
``wakeup`` here, are in the product now (``actors/wakeup.py``)."""

from bench.proposals import async_commit  # noqa: F401  (the pool patches first, before any pool opens)
from bench.proposals import fewer_round_trips  # noqa: F401
