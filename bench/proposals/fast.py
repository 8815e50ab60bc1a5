"""The worker-side proposals combined: event-driven consumers (``wakeup``), autocommit pool connections
(``autocommit``) and asynchronous commits of the worker's audit writes (``async_commit``).  The producer
side is ``bench.proposals.wakeup``."""

from bench.proposals import async_commit  # noqa: F401  (the pool patches first, before any pool opens)
from bench.proposals import autocommit  # noqa: F401
from bench.proposals import wakeup  # noqa: F401
