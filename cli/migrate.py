"""``portfolio-sync migrate``: apply schema.sql.  It needs no broker, so that it works before
anything else is set up (``cli.main`` runs it without importing the producer API)."""

from __future__ import annotations

import settings
from storage import migrate

from . import output
from .exits import OK


def cmd_migrate(args) -> int:
    cfg = settings.get()
    if args.create_database and migrate.create_database(cfg.database.url, connect_timeout=cfg.database.connect_timeout_s):
        output.note(f"created database {cfg.database.url_display}")
    migrate.apply_schema(cfg.database.url, connect_timeout=cfg.database.connect_timeout_s)
    print(f"schema applied to {cfg.database.url_display}")
    return OK
