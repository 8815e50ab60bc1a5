"""The producer-side proposals together: ``batch_enqueue`` (one Lua call per batch step, with the wake-ups
of the queues in the same round trip).  The other one, ``wakeup`` (publish after enqueueing), is in the
product now (``actors.broker.SyncBroker``)."""

from bench.proposals import batch_enqueue  # noqa: F401
