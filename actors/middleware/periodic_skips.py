"""``PeriodicSkips``: a periodic tick that periodiq skipped is never skipped silently."""

from __future__ import annotations

import logging
import time

import psycopg
from dramatiq.middleware import Middleware

from storage import scheduling

from ..constants import PERIODIC_SKIP_DELAY_S
from ..services import context
from ..services.scheduler import tick_of

logger = logging.getLogger(__name__)


class PeriodicSkips(Middleware):
    """Make a skipped periodic message visible: a warning, and its tick recorded as skipped."""

    def after_skip_message(self, broker, message):
        actor = broker.actors.get(message.actor_name)
        if actor is None or "periodic" not in actor.options:
            return
        tick_at, scheduler_id = tick_of(message)
        waited_s = round(time.time() - message.message_timestamp / 1000, 1)
        logger.warning("Tick %s of %s was skipped after waiting %s s in the queue; the next tick catches up.",
                       tick_at.isoformat(), actor.actor_name, waited_s)
        try:
            if scheduling.claim_tick(actor.actor_name, tick_at, scheduler_id=scheduler_id, details={}):
                scheduling.finish_tick(actor.actor_name, tick_at, details={
                    "reason": "skipped", "waited_s": waited_s, "skip_delay_s": PERIODIC_SKIP_DELAY_S})
        except psycopg.Error as exc:
            logger.warning("Could not record the skipped tick: %s", context.cfg().redact(str(exc)))
