"""PostgreSQL at DATABASE_URL: used if it answers, else a cluster of the checkout's own in .local/pg."""

from __future__ import annotations

import glob
import os
import pwd
import re
import shutil
import subprocess
import time
from pathlib import Path

from .common import (LOCAL, LOGS, PG_DIR, PG_LOG, ROOT, VENV_PY, DevError, have, is_loopback, proc_name, read_pid, say,
                     show_tail, tcp_open, warn)
from .urls import ServerUrl, parse

READY, STARTING, DOWN = 0, 1, 2

# Without pg_isready: connect with the venv's psycopg and tell "answers" from "nothing there".
_PROBE = """
import os, sys
import psycopg
try:
    psycopg.connect(os.environ["DATABASE_URL"], dbname="postgres", connect_timeout=3).close()
except psycopg.OperationalError as e:
    msg = str(e)
    if "starting up" in msg or "shutting down" in msg:
        sys.exit(1)
    if any(s in msg for s in ("Connection refused", "No such file or directory", "timeout expired",
                              "could not translate host name", "Network is unreachable")):
        sys.exit(2)
    sys.exit(0)  # the server answered (authentication or missing database): it is up
"""


def status(url: ServerUrl) -> int:
    """READY (accepting connections), STARTING (answering, not ready yet) or DOWN."""
    if have("pg_isready"):
        args = ["pg_isready", "-q", "-p", str(url.port), "-t", "3"] + (["-h", url.host] if url.host else [])
        code = subprocess.run(args).returncode
    else:
        code = subprocess.run([str(VENV_PY), "-c", _PROBE], stderr=subprocess.DEVNULL).returncode
    return code if code in (READY, STARTING) else DOWN


def wait_ready(url: ServerUrl, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if status(url) == READY:
            return True
        time.sleep(0.2)
    return False


def _major(bindir: str) -> str:
    out = subprocess.run([f"{bindir}/pg_ctl", "--version"], capture_output=True, text=True).stdout
    found = re.search(r"\) (\d+)", out)
    return found.group(1) if found else ""


def find_bindir(major: str = "") -> str | None:
    """The directory holding initdb and pg_ctl: PATH, ``pg_config --bindir``, then the newest
    /usr/lib/postgresql/*/bin (Debian keeps initdb off PATH); of version ``major`` if given."""
    candidates = []
    if have("initdb"):
        candidates.append(str(Path(shutil.which("initdb")).resolve().parent))
    if have("pg_config"):
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True)
        if out.returncode == 0 and out.stdout.strip():
            candidates.append(out.stdout.strip())

    def version_key(path: str) -> list[int]:
        return [int(n) for n in re.findall(r"\d+", path)]

    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin") + glob.glob("/usr/local/pgsql/bin"),
                         key=version_key, reverse=True)
    for bindir in candidates:
        if not (os.access(f"{bindir}/initdb", os.X_OK) and os.access(f"{bindir}/pg_ctl", os.X_OK)):
            continue
        if major and _major(bindir) != major:
            continue
        return bindir
    return None


def _cluster_owner() -> tuple[str, list[str]]:
    """Who owns the cluster, and the prefix that runs a command as that user.

    initdb refuses to run as root: then the cluster belongs to the ``postgres`` system user
    (or whoever owns an existing .local/pg)."""
    me = pwd.getpwuid(os.geteuid()).pw_name
    if os.geteuid() != 0:
        if PG_DIR.is_dir() and PG_DIR.stat().st_uid != os.geteuid():
            other = pwd.getpwuid(PG_DIR.stat().st_uid).pw_name
            raise DevError(f"postgres: .local/pg belongs to {other}, not {me}; run ./dev as that user, "
                           "or remove .local/pg")
        return me, []
    owner = "postgres"
    if PG_DIR.is_dir() and PG_DIR.stat().st_uid != 0:
        owner = pwd.getpwuid(PG_DIR.stat().st_uid).pw_name
    try:
        pwd.getpwnam(owner)
    except KeyError:
        raise DevError(f"postgres: initdb refuses to run as root and there is no '{owner}' system user; run ./dev "
                       "as a regular user, or create it: sudo adduser --system --group --home /var/lib/postgresql "
                       "postgres") from None
    if not have("runuser"):
        raise DevError(f"postgres: runuser (util-linux) is needed to run PostgreSQL as '{owner}' when ./dev runs as root")
    as_owner = ["runuser", "-u", owner, "--"]
    LOCAL.chmod(LOCAL.stat().st_mode | 0o001)
    if subprocess.run([*as_owner, "test", "-x", str(LOCAL)]).returncode != 0:
        raise DevError(f"postgres: user '{owner}' cannot reach {LOCAL} (a parent directory is not searchable); "
                       "run ./dev as a regular user or move the checkout")
    return owner, as_owner


def _run_logged(args: list[str], log: Path) -> bool:
    with open(log, "wb") as out:
        return subprocess.run(args, cwd=PG_DIR, stdin=subprocess.DEVNULL, stdout=out,
                              stderr=subprocess.STDOUT).returncode == 0


def ensure_postgres() -> ServerUrl:
    url = parse("DATABASE_URL", os.environ["DATABASE_URL"], 5432)
    addr = f"{url.host or 'local socket'}:{url.port}"
    state = status(url)
    if state == STARTING:
        state = READY if wait_ready(url, 30) else DOWN
    if state == READY:
        say(f"postgres: using {addr}")
        return url
    if not url.host:
        raise DevError(f"postgres: the default local socket does not answer (DATABASE_URL={url.show}); set a host, "
                       "e.g. postgresql://127.0.0.1:5432/portfolio_sync")
    if not is_loopback(url.host):
        raise DevError(f"postgres: {addr} does not answer (DATABASE_URL={url.show}); "
                       "./dev only starts PostgreSQL on a loopback address")
    if tcp_open(url.host, url.port):
        raise DevError(f"postgres: something listens on {addr} but it is not a ready PostgreSQL server "
                       f"(DATABASE_URL={url.show})")

    # A cluster of ours may exist already, maybe running on another port.
    postmaster = PG_DIR / "postmaster.pid"
    pid = read_pid(postmaster)
    if pid and proc_name(pid).startswith("postgres"):
        lines = postmaster.read_text().splitlines()
        running_port = lines[3] if len(lines) > 3 else "?"
        raise DevError(f"postgres: the PostgreSQL started by ./dev (pid {pid}) runs on port {running_port}, "
                       f"not {url.port}; run ./dev down first")
    version_file = PG_DIR / "PG_VERSION"
    want_major = version_file.read_text().strip().split(".")[0] if version_file.is_file() else ""
    bindir = find_bindir(want_major)
    if bindir is None:
        if want_major and find_bindir():
            raise DevError(f"postgres: .local/pg holds a PostgreSQL {want_major} cluster but only other versions are "
                           "installed; ./dev down && rm -rf .local/pg to start afresh")
        raise DevError(f"postgres: nothing answers on {addr} and the PostgreSQL server is not installed: "
                       "sudo apt-get install postgresql")

    LOCAL.mkdir(parents=True, exist_ok=True)
    owner, as_owner = _cluster_owner()
    # Unix socket paths are limited to 107 bytes: with a longer one, TCP only.
    sockdir = str(PG_DIR) if len(str(PG_DIR)) + 20 <= 107 else ""
    new = False
    if not version_file.is_file():
        shutil.rmtree(PG_DIR, ignore_errors=True)
        PG_DIR.mkdir(parents=True)
        PG_DIR.chmod(0o700)
        if as_owner:
            shutil.chown(PG_DIR, owner, pwd.getpwnam(owner).pw_gid)
        locales = subprocess.run(["locale", "-a"], capture_output=True, text=True).stdout if have("locale") else ""
        locale = "C.UTF-8" if re.search(r"(?im)^c\.utf-?8$", locales) else "C"
        version = subprocess.run([f"{bindir}/pg_ctl", "--version"], capture_output=True, text=True).stdout
        version = re.sub(r"^pg_ctl \(PostgreSQL\) ([0-9.]+).*", r"PostgreSQL \1", version.strip())
        say(f"postgres: creating a cluster in .local/pg ({version}, {bindir}"
            f"{', as user ' + owner if as_owner else ''})")
        if not _run_logged([*as_owner, f"{bindir}/initdb", "-D", str(PG_DIR), "-A", "trust", "-E", "UTF8",
                            f"--locale={locale}"], LOGS / "initdb.log"):
            show_tail(LOGS / "initdb.log")
            shutil.rmtree(PG_DIR, ignore_errors=True)
            raise DevError("postgres: initdb failed; see .local/logs/initdb.log")
        with open(PG_DIR / "postgresql.conf", "a") as conf:
            conf.write("# added by ./dev\n")
            conf.write("unix_socket_directories = '%s'\n" % sockdir.replace("'", "''"))
        new = True
    listen = url.host.strip("[]")
    PG_LOG.touch()
    if as_owner:
        shutil.chown(PG_LOG, owner, pwd.getpwnam(owner).pw_gid)
    if not _run_logged([*as_owner, f"{bindir}/pg_ctl", "-D", str(PG_DIR), "-l", str(PG_LOG),
                        "-o", f"-p {url.port} -c listen_addresses={listen}", "-w", "-t", "60", "start"],
                       LOGS / "pg_ctl.log"):
        show_tail(LOGS / "pg_ctl.log", 5)
        show_tail(PG_LOG, 10)
        raise DevError("postgres: failed to start; see .local/pg.log")
    if not wait_ready(url, 30):
        raise DevError(f"postgres: started but {addr} does not answer; see .local/pg.log")

    # The role DATABASE_URL connects as (libpq: the URL's user, PGUSER, the OS user) must exist;
    # the bootstrap superuser is the cluster's owner.
    role = url.user or os.environ.get("PGUSER") or pwd.getpwuid(os.geteuid()).pw_name
    if role != owner:
        created = subprocess.run([*as_owner, f"{bindir}/createuser", "-h", sockdir or listen, "-p", str(url.port),
                                  "-U", owner, "-s", role], cwd=PG_DIR, capture_output=True, text=True)
        if created.returncode == 0:
            say(f"postgres: created superuser role '{role}'")
        elif "already exists" not in created.stderr + created.stdout:
            warn((created.stderr + created.stdout).strip())
            raise DevError(f"postgres: could not create role '{role}'")
    say(f"postgres: started {url.host}:{url.port} (pid {read_pid(postmaster)}, data in .local/pg, log .local/pg.log)"
        f"{' [new cluster]' if new else ''}")
    return url


def migrate(url: ServerUrl) -> None:
    """Create the database if missing and apply the schema, as the Procfile's release does."""
    say("postgres: creating database and applying schema (python -m storage.migrate --create-database)")
    with open(LOGS / "migrate.log", "wb") as log:
        done = subprocess.run([str(VENV_PY), "-m", "storage.migrate", "--create-database"], cwd=ROOT,
                              stdout=log, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        show_tail(LOGS / "migrate.log")
        raise DevError("schema migration failed; see .local/logs/migrate.log")
    say(f"postgres: database '{url.database or '?'}' ready")
