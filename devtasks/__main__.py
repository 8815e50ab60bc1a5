"""``./dev <command>``: up | test [pytest args] | down | --help  (see docs/local-setup.md)."""

from __future__ import annotations

import os
import sys

from .common import DEFAULTS, ROOT, VENV_PY, DevError, say, warn
from .down import down
from .postgres import ensure_postgres, migrate
from .redis_server import ensure_redis
from .testdeps import ensure_chromium, ensure_node_modules
from .up import Up
from .venv import ensure_venv

USAGE = """\
Usage: ./dev <command> [args]

  up            set up and run the whole system locally (Procfile via honcho),
                request a few demo syncs, then run until Ctrl-C
  test [ARGS]   set up and run the test suite: .venv/bin/python -m pytest ARGS
                (in parallel workers unless ARGS choose: -n 0 runs serially)
  down          stop the Redis/PostgreSQL/honcho that ./dev itself started
  help, --help  show this help

Setup shared by 'up' and 'test' (idempotent, fast when nothing changed):
  - .venv: created with python3 (>= 3.11); pip install -e '.[test,dev]' when
    pyproject.toml changed
  - Redis at $REDIS_URL (default redis://127.0.0.1:6379/0): used if it answers,
    else a local redis-server is started (data in .local/redis)
  - PostgreSQL at $DATABASE_URL (default postgresql://127.0.0.1:5432/portfolio_sync):
    used if it answers, else a local cluster is created and started in .local/pg
  - 'up' only: database created and schema applied (python -m storage.migrate)
  - 'test' only: npm ci in tests/evm, Debian chromium + chromium-driver

Environment: REDIS_URL, DATABASE_URL, PORT (dashboard port, default 8050).
Logs: .local/logs/, .local/redis/redis.log, .local/pg.log
"""

#: pytest-xdist workers when ./dev test is not told: the suite mostly waits on servers and
#: subprocesses, so two workers per core pay off; more than four only adds contention
#: (figures in docs/performance.md).
DEFAULT_WORKERS = min(4, 2 * (os.cpu_count() or 1))


def pytest_args(args: list[str]) -> list[str]:
    """``args`` with ``-n DEFAULT_WORKERS`` in front, unless they choose the number of workers themselves."""
    chooses = any(a == "--numprocesses" or a.startswith(("-n", "--numprocesses=")) for a in args)
    disables = any(a in ("no:xdist", "-pno:xdist") for a in args)
    return args if chooses or disables else ["-n", str(DEFAULT_WORKERS), *args]


def bootstrap():
    ensure_venv()
    return ensure_redis(), ensure_postgres()


def cmd_test(args: list[str]) -> int:
    bootstrap()
    ensure_node_modules()
    ensure_chromium()
    argv = pytest_args(args)
    say(f"pytest: python -m pytest {' '.join(argv)}")
    os.execv(VENV_PY, [str(VENV_PY), "-m", "pytest", *argv])


def cmd_up(args: list[str]) -> int:
    redis_url, postgres_url = bootstrap()
    migrate(postgres_url)
    return Up(redis_url, postgres_url).run()


def main(argv: list[str]) -> int:
    os.chdir(ROOT)
    for name, default in DEFAULTS.items():
        os.environ[name] = os.environ.get(name) or default
    command, args = (argv[0], argv[1:]) if argv else ("", [])
    commands = {"up": cmd_up, "test": cmd_test, "down": lambda _args: down()}
    if command in ("help", "-h", "--help"):
        sys.stdout.write(USAGE)
        return 0
    if not command:
        sys.stdout.write(USAGE)
        return 2
    if command not in commands:
        warn(f"dev: unknown command '{command}'")
        sys.stderr.write(USAGE)
        return 2
    try:
        return commands[command](args)
    except DevError as exc:
        warn(f"dev: {exc}")
        return 1
    except KeyboardInterrupt:  # Ctrl-C during the setup: what a shell script would do, without a traceback
        return 130


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
