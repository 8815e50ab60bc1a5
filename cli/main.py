"""The ``portfolio-sync`` entry point (``[project.scripts]``; ``python -m cli`` runs the same).

It answers ``--help`` and usage errors (exit 0 and 2) and checks the configuration (exit 2 with
its message) before anything reads it, then runs the command and maps its errors to exit codes.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence

import psycopg
import redis

import settings
from actors import logs

from . import commands, migrate
from .arguments import build_parser
from .exits import FAILED, INVALID, OK, UNAVAILABLE, CommandError

#: Connection errors of the clients: Redis or PostgreSQL did not answer.
_UNAVAILABLE = (redis.ConnectionError, redis.TimeoutError, psycopg.OperationalError)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)  # exits 2 on a usage error, 0 after --help
    try:
        cfg = settings.get()
    except settings.ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return INVALID
    if args.handler == "migrate":  # needs no broker: works before anything else is set up
        return _run(migrate.cmd_migrate, args, cfg, _UNAVAILABLE)
    logs.install(cfg)
    if not args.verbose:  # the command's own messages are its interface; library warnings only with -v
        for handler in logging.getLogger().handlers:
            handler.setLevel(max(logging.ERROR, handler.level))
    return _run(commands.HANDLERS[args.handler], args, cfg, _UNAVAILABLE + commands.UNAVAILABLE_ERRORS)


def _run(handler: Callable[[argparse.Namespace], int], args: argparse.Namespace, cfg: settings.Settings,
         unavailable: tuple[type[BaseException], ...]) -> int:
    try:
        return handler(args) or OK
    except BrokenPipeError:
        # The reader went away (`… | head`): nothing to say.  stdout now points at /dev/null, so that the
        # interpreter's last flush of it does not fail again on the way out.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return FAILED
    except CommandError as exc:
        print(cfg.redact(str(exc)), file=sys.stderr)
        return exc.code
    except ValueError as exc:  # InvalidSyncRequest is one
        print(f"invalid: {cfg.redact(str(exc))}", file=sys.stderr)
        return INVALID
    except unavailable as exc:
        print(f"unavailable: {cfg.redact(str(exc)).strip()}", file=sys.stderr)
        return UNAVAILABLE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        print(f"error: {type(exc).__name__}: {cfg.redact(str(exc))}", file=sys.stderr)
        return FAILED
