"""The worker-side proposals combined: autocommit pool connections (``autocommit``) and asynchronous
commits of the worker's audit writes (``async_commit``).  No producer side: the event-driven consumers
this once also took (``wakeup``) are in the product now (``actors/wakeup.py``)."""

from bench.proposals import async_commit  # noqa: F401  (the pool patches first, before any pool opens)
from bench.proposals import autocommit  # noqa: F401
