"""Reads for operating the system: a wallet's latest syncs, and the readiness probe's database check.

The probe keeps one connection of its own (not the pool's), opened with short timeouts, so a
platform polling ``/readyz`` every few seconds costs one cheap statement per poll and never waits
behind the pool; it reconnects after a failure.
"""

from __future__ import annotations

import re
import threading

import psycopg
from psycopg.rows import dict_row

from .migrate import SCHEMA
from .pool import get_readonly_pool
from .queries import QUERIES

#: The tables schema.sql creates: a database missing any of them is not ready.
SCHEMA_TABLES: tuple[str, ...] = tuple(re.findall(r"CREATE TABLE IF NOT EXISTS (\w+)", SCHEMA.read_text()))


def wallet_syncs(wallet_address: str, *, user_id: str | None = None, limit: int = 20) -> list[dict]:
    """The latest ``limit`` operations of ``wallet_address`` (lower case), of ``user_id`` if given, read on
    the read endpoint (``DASHBOARD_DATABASE_URL``, the primary by default)."""
    with get_readonly_pool().connection() as conn:
        return conn.execute(QUERIES["wallet_syncs"], {
            "wallet_address": wallet_address, "user_id": user_id, "limit": limit,
        }).fetchall()


class DatabaseProbe:
    """``check()`` raises :class:`psycopg.Error` if PostgreSQL does not answer within ``timeout_s``,
    and returns the schema's missing tables (empty when it is applied)."""

    def __init__(self, database_url: str, *, timeout_s: float = 2.0):
        self.database_url = database_url
        self.timeout_s = timeout_s
        self._conn: psycopg.Connection | None = None
        self._lock = threading.Lock()

    def check(self) -> list[str]:
        with self._lock:
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = psycopg.connect(
                        self.database_url, autocommit=True, row_factory=dict_row,
                        connect_timeout=max(1, round(self.timeout_s)), application_name="portfolio-sync-probe",
                        options=f"-c statement_timeout={int(self.timeout_s * 1000)}")
                row = self._conn.execute(QUERIES["schema_missing_tables"], {"tables": list(SCHEMA_TABLES)}).fetchone()
                return list(row["missing"])
            except psycopg.Error:
                self.close_locked()
                raise

    def close(self) -> None:
        with self._lock:
            self.close_locked()

    def close_locked(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except psycopg.Error:
                pass
        self._conn = None
