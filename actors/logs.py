"""Logging that never leaks a secret: every record passes through ``Settings.redact``."""

from __future__ import annotations

import logging

import settings as settings_module


class RedactingFilter(logging.Filter):
    """Rewrite each record's message and traceback with secrets replaced by ``***``."""

    def __init__(self, cfg: settings_module.Settings):
        super().__init__()
        self.cfg = cfg

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.cfg.redact(record.getMessage())
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
        logging.basicConfig(format="[%(asctime)s] [PID %(process)d] [%(threadName)s] [%(name)s] [%(levelname)s] %(message)s")
    root.setLevel(cfg.log_level)
    # httpx logs every request with its full URL at INFO; a provider URL may carry a key, and one
    # line per chain read is noise anyway.  Its warnings and errors still show.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, root.level))
    for handler in root.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter(cfg))
