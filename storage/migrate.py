"""Apply ``schema.sql`` (idempotent); the Procfile's ``release`` process.

Usage: ``python -m storage.migrate [--create-database]``

``--create-database`` first creates the database named in ``DATABASE_URL``
through the server's ``postgres`` maintenance database, if it is missing
(what ``./dev up`` needs on a fresh machine; a hosted database already exists).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

import settings as settings_module

# Package data, so that a plain (non-editable) install can run `release`; the top-level
# schema.sql is a symlink to it, for readers of the repository.
SCHEMA = Path(__file__).resolve().parent / "schema.sql"
# Any constant will do: concurrent releases serialise on it instead of racing on DDL.
_LOCK_KEY = 0x706F7274


def create_database(database_url: str, *, connect_timeout: int) -> bool:
    """Create the database of ``database_url`` if missing; ``True`` if it was created."""
    params = conninfo_to_dict(database_url)
    name = params.get("dbname")
    if not name:
        raise ValueError("DATABASE_URL names no database")
    maintenance = make_conninfo(database_url, dbname="postgres", connect_timeout=connect_timeout)
    with psycopg.connect(maintenance, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            return False
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return True


def apply_schema(database_url: str, *, connect_timeout: int) -> None:
    """Run ``schema.sql`` in one transaction, under an advisory lock."""
    with psycopg.connect(database_url, connect_timeout=connect_timeout) as conn:
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        conn.execute(SCHEMA.read_text())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m storage.migrate", description=__doc__.splitlines()[0])
    parser.add_argument("--create-database", action="store_true",
                        help="create the database of DATABASE_URL first if it does not exist")
    args = parser.parse_args(argv)
    try:
        cfg = settings_module.load()
    except settings_module.ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    try:
        if args.create_database and create_database(cfg.database.url, connect_timeout=cfg.database.connect_timeout_s):
            print(f"created database {cfg.database.url_display}")
        apply_schema(cfg.database.url, connect_timeout=cfg.database.connect_timeout_s)
    except psycopg.Error as exc:
        print(f"schema not applied to {cfg.database.url_display}: {cfg.redact(str(exc))}", file=sys.stderr)
        return 1
    print(f"schema applied to {cfg.database.url_display}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
