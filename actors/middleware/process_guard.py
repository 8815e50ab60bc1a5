"""``WorkerProcessGuard``: a Dramatiq worker process stops gracefully, and never outlives its parent.

- A Heroku-style platform (and honcho) sends SIGTERM to every process of the
  dyno or group; Dramatiq's main process forwards one more to its workers, and a
  worker takes a second SIGTERM as "kill now", abandoning its running jobs.
  Here a worker takes the first SIGTERM as "stop gracefully" (Dramatiq's own
  handler) and ignores the repeats; the platform's SIGKILL still ends it after
  its grace period.
- A worker whose main process dies (even by SIGKILL) receives SIGTERM from the
  kernel (``PR_SET_PDEATHSIG``) and stops gracefully, instead of running on
  as an orphan and taking jobs.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import signal
import sys

from dramatiq.middleware import Middleware

logger = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


class WorkerProcessGuard(Middleware):
    def after_process_boot(self, broker):
        # Runs in the worker process's main thread, after Dramatiq installed its signal handlers.
        first_handler = signal.getsignal(signal.SIGTERM)
        stopping = False

        def on_sigterm(signum, frame):
            nonlocal stopping
            if stopping:
                logger.info("Already stopping gracefully; ignoring a repeated SIGTERM.")
                return
            stopping = True
            if callable(first_handler):
                first_handler(signum, frame)

        signal.signal(signal.SIGTERM, on_sigterm)
        if sys.platform.startswith("linux"):
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
                logger.warning("prctl(PR_SET_PDEATHSIG) failed: errno %d", ctypes.get_errno())
        parent = multiprocessing.parent_process()
        if parent is not None and parent.pid != os.getppid():  # it died before the prctl above took effect
            os.kill(os.getpid(), signal.SIGTERM)
