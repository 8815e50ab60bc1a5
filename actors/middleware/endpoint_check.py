"""``EndpointCheck``: a worker whose provider endpoints serve the wrong chains refuses to start.

A node URL pasted under the wrong chain id in ``RPC_URLS`` would store one
chain's balances as another's; the reads check ``eth_chainId`` too, but a
refusal at start names the variable before any sync fails.  An endpoint that
cannot be reached at start is no configuration error: the worker starts, and
its reads check the endpoint once it answers.
"""

from __future__ import annotations

import logging

from dramatiq.middleware import Middleware

from chaindata.base import PermanentProviderError

from ..services import context

logger = logging.getLogger(__name__)

CONFIG_ERROR_EXIT = 2


class EndpointCheck(Middleware):
    def before_worker_boot(self, broker, worker):
        check = getattr(context.provider(), "check_endpoints", None)
        if check is None:  # a provider without endpoints to check (simulated)
            return
        try:
            unchecked = check()
        except PermanentProviderError as exc:
            logger.error("configuration error: %s", context.cfg().redact(str(exc)))
            # Dramatiq logs and swallows a hook's exceptions; an exit ends this worker process, and its
            # main process then stops the others.  2: a configuration error, as for the CLI.
            raise SystemExit(CONFIG_ERROR_EXIT) from None
        if unchecked:
            logger.warning("Could not ask the endpoint of %s at start which chain it serves; each read asks it.",
                           ", ".join(unchecked))
