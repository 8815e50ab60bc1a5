"""``JobLogContext``: every log line a job's thread writes names the job (see ``actors.logs``)."""

from __future__ import annotations

from dramatiq.middleware import Middleware

from .. import logs
from ..constants import is_sync_actor


class JobLogContext(Middleware):
    """Sets the job fields of every log line a worker thread writes while it processes a message
    (first in the middleware list, so the other middleware's lines carry them too)."""

    def before_process_message(self, broker, message):
        fields = {"actor": message.actor_name, "message_id": message.message_id,
                  "attempt": int(message.options.get("retries") or 0) + 1}
        if is_sync_actor(message.actor_name) and message.args:
            fields["operation_id"] = str(message.args[0])[:64]
        logs.set_job(fields)

    def after_process_message(self, broker, message, *, result=None, exception=None):
        logs.set_job(None)

    after_skip_message = after_process_message
