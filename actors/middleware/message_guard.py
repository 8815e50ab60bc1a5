"""``MessageGuard``: a message that cannot run must fail at once, visibly, and never crash a worker.

- Arguments that do not fit the actor's signature (a message sent by hand, or
  by an old producer) are a permanent error: the message goes straight to the
  dead-letter queue instead of being retried, and if it names an operation,
  that operation is failed with ``error_code = 'malformed_message'``.
- A sync message skipped by ``AgeLimit`` fails its operation as ``expired``,
  so the audit trail never keeps a ``queued`` row for a job nobody will run.
"""

from __future__ import annotations

import functools
import inspect
import logging

from dramatiq.middleware import Middleware, SkipMessage

from ..constants import is_sync_actor
from ..services import lifecycle
from ..validation import parse_operation_id

logger = logging.getLogger(__name__)

_REJECTED = "guard_rejected"


class MessageGuard(Middleware):
    def before_process_message(self, broker, message):
        actor = broker.get_actor(message.actor_name)
        try:
            _signature(actor.fn).bind(*message.args, **message.kwargs)
        except TypeError as exc:
            logger.error("Rejected message %s for %s: its arguments do not fit the actor (%s).",
                         message.message_id, message.actor_name, exc)
            operation_id = _find_operation_id(message.args, message.kwargs)
            if operation_id and is_sync_actor(message.actor_name):
                lifecycle.fail_unrun(operation_id, "malformed_message",
                                     f"the message's arguments do not fit {message.actor_name}: {exc}")
            message.options[_REJECTED] = True
            message.fail()
            raise SkipMessage("arguments do not fit the actor") from None

    def after_skip_message(self, broker, message):
        # AgeLimit is the only other middleware here that skips messages.
        if message.failed and not message.options.get(_REJECTED) and is_sync_actor(message.actor_name):
            operation_id = _find_operation_id(message.args, message.kwargs)
            if operation_id:
                lifecycle.fail_unrun(operation_id, "expired",
                                     "the message waited longer than SYNC_MAX_AGE_MS before a worker took it")


@functools.cache
def _signature(fn) -> inspect.Signature:
    # inspect.signature walks the function's code each time: 2% of a worker's CPU, once per message.
    return inspect.signature(fn)


def _find_operation_id(args, kwargs) -> str | None:
    kwargs = kwargs if isinstance(kwargs, dict) else {}
    for value in [kwargs.get("operation_id"), *args, *kwargs.values()]:
        operation_id = parse_operation_id(value)
        if operation_id:
            return operation_id
    return None
