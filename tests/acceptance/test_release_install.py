"""The Procfile's ``release`` from a plain (non-editable) install: what a platform's build runs.

The project is built into a wheel and unpacked outside the checkout, so ``storage`` comes from
there and ``schema.sql`` can only be found if it ships as package data; ``python -m
storage.migrate`` then creates the schema in a database of this test's own, empty until then.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
import zipfile
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from storage.operating import SCHEMA_TABLES
from tests.processes import ROOT

pytestmark = pytest.mark.acceptance


@pytest.fixture
def empty_database(database):
    name = f"portfolio_sync_release_{uuid.uuid4().hex[:10]}"
    maintenance = make_conninfo(database, dbname="postgres", connect_timeout=5)
    with psycopg.connect(maintenance, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield urlunsplit(urlsplit(database)._replace(path="/" + name))
    finally:
        with psycopg.connect(maintenance, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def test_release_from_a_wheel_creates_the_schema_in_an_empty_database(tmp_path, empty_database):
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check",
                            "-w", str(tmp_path / "dist"), str(ROOT)], capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    wheel = next((tmp_path / "dist").glob("portfolio_sync-*.whl"))
    assert "storage/schema.sql" in zipfile.ZipFile(wheel).namelist()
    installed = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(installed)

    # The unpacked wheel first on the path, the checkout nowhere on it (the working directory is elsewhere).
    env = {**os.environ, "DATABASE_URL": empty_database, "PYTHONPATH": str(installed)}
    where = subprocess.run([sys.executable, "-c", "import storage.migrate as m; print(m.SCHEMA)"], cwd=tmp_path,
                           env=env, capture_output=True, text=True, timeout=60)
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()).is_relative_to(installed)

    release = subprocess.run([sys.executable, "-m", "storage.migrate"], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=120)
    assert release.returncode == 0, release.stdout + release.stderr
    with psycopg.connect(empty_database) as conn:
        tables = {row[0] for row in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert {"sync_operations", "tracked_wallets", "holdings", *SCHEMA_TABLES} <= tables
