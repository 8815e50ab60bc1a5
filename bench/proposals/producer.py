"""The producer-side proposals together: ``wakeup`` (publish after enqueueing) and ``batch_enqueue`` (one Lua
call per batch step), in that order so the batch enqueue also publishes the wake-up."""

from bench.proposals import wakeup  # noqa: F401
from bench.proposals import batch_enqueue  # noqa: F401,E402
