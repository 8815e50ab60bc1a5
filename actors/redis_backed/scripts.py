"""The project's Lua scripts: their source, and how they run on a pipeline in one round trip.

Each script is a file of ``lua/`` (as Dramatiq keeps its own next to its Redis broker), read
once per process by :func:`source`; its header says what its KEYS and ARGV are.  Logic that several
scripts run (a circuit's enter and record, a shared read's claim and finish) lives once, as Lua
functions in a ``*_lib.lua`` file, sent in front of each script that calls it: a script sent with
EVALSHA cannot load another.

redis-py's ``Script``, called on a pipeline, makes that pipeline send ``SCRIPT
EXISTS`` for its scripts before every ``execute``: a second round trip each time
(7.5% of a worker's CPU in a profile, and one more wait in every request).  Here
a script is queued as a bare ``EVALSHA``, and the rare ``NOSCRIPT`` (Redis
restarted, or its scripts were flushed) is mended afterwards: the script is
loaded and the commands that were refused, which therefore did not run, are run
again (up to :data:`MENDS` times, if the scripts were flushed once more in between).
Nothing runs twice.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from importlib import resources
from typing import Any

import redis
from redis.commands.core import Script
from redis.exceptions import NoScriptError


@functools.cache
def source(*names: str) -> str:
    """The text of the script made of ``lua/<name>.lua`` for each of ``names``, in order (libraries first)."""
    folder = resources.files(__package__).joinpath("lua")
    return "\n".join(folder.joinpath(f"{name}.lua").read_text(encoding="utf-8") for name in names)


#: Every script queued so far, by SHA1: what to load when Redis answers NOSCRIPT.
_scripts: dict[str, Script] = {}


def queue(pipeline: redis.client.Pipeline, script: Script, *, keys: Sequence[Any], args: Sequence[Any]) -> None:
    """Queue ``script(keys, args)`` on ``pipeline``; send it with :func:`execute`."""
    _scripts.setdefault(script.sha, script)
    pipeline.evalsha(script.sha, len(keys), *keys, *args)


#: How many times :func:`execute` loads and runs again what Redis refused with NOSCRIPT: more than once, as
#: the scripts may be flushed again (another restart, another client's SCRIPT FLUSH) between the load and
#: the run.
MENDS = 3


def execute(pipeline: redis.client.Pipeline) -> list[Any]:
    """Send ``pipeline`` (its scripts queued with :func:`queue`) and return every command's result, an
    exception in place of a command that failed.  Raises only if the round trip itself fails."""
    sent = list(pipeline.command_stack)
    results = pipeline.execute(raise_on_error=False)
    refused = [i for i, result in enumerate(results) if isinstance(result, NoScriptError)]
    for _ in range(MENDS):
        if not refused:
            break
        client = redis.Redis(connection_pool=pipeline.connection_pool)
        for sha in {sent[i][0][1] for i in refused}:  # EVALSHA's arguments: (name, sha, numkeys, ...)
            client.script_load(_scripts[sha].script)
        again = client.pipeline(transaction=False)
        for i in refused:
            args, options = sent[i]
            again.execute_command(*args, **options)
        for i, result in zip(refused, again.execute(raise_on_error=False)):
            results[i] = result
        refused = [i for i in refused if isinstance(results[i], NoScriptError)]
    return results


def raise_first_error(results: Sequence[Any]) -> list[Any]:
    """``results`` of :func:`execute`, or the first exception among them, raised."""
    for result in results:
        if isinstance(result, Exception):
            raise result
    return list(results)
