"""Configuration, read once from the environment (12-factor).

Every knob of the system is an environment variable declared once in :mod:`settings.spec`, with
its parser, bounds, default and meaning, in the group that uses it: ``get().redis.url``,
``get().sync.max_attempts``, ``get().scheduler.cron``...  :func:`load` validates all of them and
raises :class:`ConfigError` naming the first bad variable, so a misconfigured process stops at
start instead of failing on its first job.  The README's configuration table is generated from
the same spec (``python -m tools.readme_config``).

Secrets (passwords inside URLs, API keys, tokens) are kept out of ``repr()`` and are scrubbed from
any text passed through :meth:`Settings.redact`, which the logging filter and the audit trail's
error messages both use.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import warnings
from collections.abc import Mapping

from .parsers import ConfigError, cron_problem
from .redaction import redact_url, scrub_url_passwords
from .spec import GROUPS, PROVIDERS, Settings, Variable, variables

__all__ = ["PROVIDERS", "RETIRED", "VARIABLES", "ConfigError", "Settings", "Variable", "cron_problem", "get", "load",
           "redact_url", "scrub_url_passwords", "variables"]

#: Every variable by its environment name, in the spec's order.
VARIABLES: dict[str, Variable] = {variable.name: variable for _group, _attribute, variable in variables()}


#: Variables no longer read, with what replaced them: setting one warns instead of being silently ignored.
RETIRED: dict[str, str] = {
    "CIRCUIT_FAIL_MAX": "the circuit breaker now opens on a failure rate: see CIRCUIT_FAILURE_RATE, "
                        "CIRCUIT_MIN_CALLS and CIRCUIT_WINDOW_S",
}


def load(environ: Mapping[str, str] | None = None) -> Settings:
    """Read and validate every variable of the spec from ``environ`` (default ``os.environ``)."""
    env = os.environ if environ is None else environ
    for name, instead in RETIRED.items():
        if env.get(name, "").strip():
            warnings.warn(f"{name} is no longer read: {instead}", DeprecationWarning, stacklevel=2)
    return Settings(**{group: cls(**{field.name: field.metadata["variable"].read(env)
                                     for field in dataclasses.fields(cls)})
                       for group, cls in GROUPS.items()})


@functools.lru_cache(maxsize=1)
def get() -> Settings:
    """The process-wide settings, loaded on first use."""
    return load()
