"""Logging that never leaks a secret: every record passes through ``Settings.redact``.

``LOG_FORMAT=json`` (the default) writes one JSON object per line:
``time`` (ISO 8601, UTC), ``level``, ``logger``, ``message``, ``process``, ``thread``, ``exc_info``
(a traceback, redacted, when there is one) and, on every line a Dramatiq job's thread logs while
it runs, ``actor``, ``message_id`` (Dramatiq's), ``attempt`` (the delivery: Dramatiq's retries + 1)
and ``operation_id`` (sync actors).  ``LOG_FORMAT=text`` keeps the classic one-line format.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import json
import logging

import settings as settings_module

TEXT_FORMAT = "[%(asctime)s] [PID %(process)d] [%(threadName)s] [%(name)s] [%(levelname)s] %(message)s"
#: The job whose thread is logging: set by ``actors.middleware.job_log_context`` while a message is processed.
_job: contextvars.ContextVar[dict | None] = contextvars.ContextVar("portfolio_sync_job", default=None)


class RedactingFilter(logging.Filter):
    """Rewrite each record's message and traceback with secrets replaced by ``***``."""

    def __init__(self, cfg: settings_module.Settings):
        super().__init__()
        self.cfg = cfg

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage()
        except Exception as exc:  # a broken argument must not take the logging thread down with it
            text = f"{record.msg!s} (unformattable arguments: {type(exc).__name__})"
        record.msg = self.cfg.redact(text)
        record.args = None
        if record.exc_info:
            # Formatters reuse exc_text when set, so the redacted traceback is what gets written.
            record.exc_text = self.cfg.redact(logging.Formatter().formatException(record.exc_info))
        return True


def install(cfg: settings_module.Settings) -> None:
    """Attach the filter to every handler of the root logger (adding one if there is none),
    and set the level from ``LOG_LEVEL``."""
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(format=TEXT_FORMAT)
    root.setLevel(cfg.logging.level)
    # httpx logs every request with its full URL at INFO; a provider URL may carry a key, and one
    # line per chain read is noise anyway.  Its warnings and errors still show.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, root.level))
    for handler in root.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter(cfg))
        if not any(isinstance(f, JobContextFilter) for f in handler.filters):
            handler.addFilter(JobContextFilter())
        if cfg.logging.format == "json" and not isinstance(handler.formatter, JsonFormatter):
            handler.setFormatter(JsonFormatter())


class JobContextFilter(logging.Filter):
    """Give each record logged while a job runs (in its thread) the job's fields (see the module docstring)."""

    def filter(self, record: logging.LogRecord) -> bool:
        job = _job.get()
        if job:
            for key, value in job.items():
                setattr(record, key, value)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line.  Only the fields of the module docstring are written (never a
    record's arbitrary extras), and a traceback is taken from ``exc_text``, which
    :class:`RedactingFilter` has already redacted."""

    _JOB_FIELDS = ("operation_id", "message_id", "attempt", "actor")

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": dt.datetime.fromtimestamp(record.created, dt.timezone.utc).isoformat(timespec="milliseconds")
                    .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
            "thread": record.threadName,
        }
        for key in self._JOB_FIELDS:
            value = getattr(record, key, None)
            if value is not None:
                entry[key] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exc_info"] = record.exc_text
        if record.stack_info:
            entry["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def set_job(fields: dict | None) -> None:
    """Give every record this thread (or task) logs from now on the job ``fields``; ``None``: no job."""
    _job.set(fields)
