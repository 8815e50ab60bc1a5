"""``PeriodicTicks``: periodiq's middleware, with a tick's wait judged on Redis's clock."""

from __future__ import annotations

import logging

from dramatiq.middleware import SkipMessage
from periodiq import PeriodiqMiddleware

from ..services.scheduler import SENT_AT_OPTION

logger = logging.getLogger(__name__)


class PeriodicTicks(PeriodiqMiddleware):
    """periodiq skips a tick that waited longer than ``skip_delay`` seconds in the queue, measured as
    the worker's clock minus the scheduler's (``scheduled_at``): a worker whose clock ran ``skip_delay``
    ahead of the scheduler's skipped every tick, one behind ran ticks however late.  A tick sent by
    :class:`~actors.services.scheduler.PeriodicActor` carries the time it was sent on Redis's clock, and
    its wait is measured on that one clock; any other message is judged by periodiq as before."""

    def before_process_message(self, broker, message):
        sent_at_ms = message.options.get(SENT_AT_OPTION)
        actor = broker.actors.get(message.actor_name)
        if sent_at_ms is None or actor is None or "periodic" not in actor.options:
            return super().before_process_message(broker, message)
        waited_s = (broker.clock.now_ms() - sent_at_ms) / 1000
        if waited_s > self.skip_delay:
            logger.info("Skipping %s:%s, which waited %.0f s (more than %s s).", message.message_id, message,
                        waited_s, self.skip_delay)
            raise SkipMessage()
        logger.info("Processing %s:%s scheduled at %s.", message.message_id, message, message.options["scheduled_at"])
