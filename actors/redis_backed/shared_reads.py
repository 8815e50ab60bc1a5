"""One chain read per wallet: syncs of the same wallet and chain within a short window share one read.

A wallet tracked by many users (an exchange's hot wallet, a famous whale) would otherwise be read
from the provider once per user.  Here the first sync to need ``(provider, chain, wallet)`` takes a
lock (``SET NX PX``, in the same script that looks for a stored read: one round trip), reads, and
leaves the read in Redis for ``window_ms``; a sync that comes while the lock is held waits for it on
a list the reader pushes to when done (``BLPOP``, no polling), then takes the stored read.  A sync
that finds nobody reading pays two round trips (claim, finish).  Each user's operation, audit row and holdings stay its own: only the
provider's answer is shared, and the audit trail says which reads were.

A reader that fails stores nothing and wakes the waiters, one of which reads in its turn.  The lock
is a lease: a live reader renews it every third of ``lock_ms`` (one thread per process renews all its
locks), so a reader that dies (kill -9, a lost host) frees it within ``lock_ms``, however long a read
may legitimately take.  (A lock that lived as long as an attempt may run made every sync of the dead
reader's wallets wait out its whole attempt deadline.)  A waiter never waits past its own deadline:
it then reads for itself.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable

import redis

from . import scripts

logger = logging.getLogger(__name__)


class SharedReads:
    """Parameters:
      client(redis.Redis): the Redis shared by every worker.
      namespace(str): key prefix.
      window_ms(int): how long a read is shared after it was made; 0 turns sharing off.
      lock_ms(int): lifetime of the lock between renewals: a reader that stops renewing it (it died)
        loses it after this long, and another sync reads instead.
    """

    def __init__(self, client: redis.Redis, *, namespace: str, window_ms: int, lock_ms: int):
        self.client = client
        self.namespace = namespace
        self.window_ms = window_ms
        self.lock_ms = lock_ms
        self._claim = client.register_script(scripts.source("shared_read_lib", "shared_read_claim"))
        self._finish = client.register_script(scripts.source("shared_read_lib", "shared_read_finish"))
        self._wake_next = client.register_script(scripts.source("shared_read_wake"))
        self._renew = client.register_script(scripts.source("renew_leases"))
        self._held: dict[str, str] = {}  # lock key -> token, of the reads this process is making
        self._held_lock = threading.Lock()
        self._renewer: threading.Thread | None = None
        # BLPOP must return before the client's own socket timeout would cut it off.
        socket_timeout = client.connection_pool.connection_kwargs.get("socket_timeout") or 5.0
        self._max_block_s = max(0.1, socket_timeout - 0.5)

    def read(self, what: str, read: Callable[[], bytes], *, deadline: float) -> tuple[bytes, bool]:
        """The read named ``what`` (e.g. ``"rpc:1:0xabc..."``): a copy of one made within the window, or
        ``read()``'s answer, made now and shared.  Returns ``(answer, shared)``; ``deadline`` is a
        ``time.monotonic()`` past which this call stops waiting for another sync's read."""
        if self.window_ms <= 0:
            return read(), False
        key, lock = self.keys(what)
        while True:
            token = uuid.uuid4().hex
            claim = self._claim(keys=[key, lock], args=[token, self.lock_ms])
            if claim[0] == b"read":
                return claim[1], True
            if claim[0] == b"mine":
                return self._read_and_share(key, lock, token, read), False
            if not self.wait(lock, claim[1], deadline):
                return read(), False

    def keys(self, what: str) -> tuple[str, str]:
        """The keys of the read named ``what``: its stored answer, its lock (``lua/shared_read_lib.lua``)."""
        key = f"{self.namespace}:shared-read:{what}"
        return key, key + ":lock"

    def wait(self, lock: str, holder: bytes | None, deadline: float) -> bool:
        """Wait (at most until ``deadline``) for the read that ``holder`` makes under ``lock`` to end; False if the
        deadline has passed and the caller should read for itself, True if it should look again."""
        if not holder:
            return True  # released since: look again
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        done = f"{lock}:{holder.decode()}"
        if self.client.blpop([done], timeout=min(remaining, self._max_block_s, self.lock_ms / 1000)):
            self._wake_next(keys=[done], args=[self.lock_ms])
        return True

    def _read_and_share(self, key: str, lock: str, token: str, read: Callable[[], bytes]) -> bytes:
        answer = None
        self.hold(lock, token)
        try:
            answer = read()
            return answer
        finally:
            self.let_go(lock)
            self._finish(keys=[key, lock, f"{lock}:{token}"],
                         args=[token, b"" if answer is None else answer, self.window_ms, self.lock_ms,
                               0 if answer is None else 1])

    def hold(self, lock: str, token: str) -> None:
        """Renew ``lock``, held by ``token``, until :meth:`let_go`: the read under it is being made."""
        with self._held_lock:
            self._held[lock] = token
            if self._renewer is None or not self._renewer.is_alive():
                self._renewer = threading.Thread(target=self._renew_forever, name="shared-read-renewer", daemon=True)
                self._renewer.start()

    def let_go(self, lock: str) -> None:
        """Stop renewing ``lock``: its read is over (the caller releases it in Redis)."""
        with self._held_lock:
            self._held.pop(lock, None)

    def _renew_forever(self) -> None:
        while True:
            time.sleep(self.lock_ms / 3000)
            with self._held_lock:
                held = list(self._held.items())
            if not held:
                continue
            try:
                self._renew(keys=[lock for lock, _ in held], args=[self.lock_ms, *[token for _, token in held]])
            except redis.RedisError as exc:
                logger.warning("Could not renew the shared-read locks: %s", exc)
