"""Deduplication and cooldown, decided atomically in Redis.

Two keys per ``(user_id, wallet)``:

- ``inflight`` holds the id of the operation queued or running for it. It is
  taken with the request and released when the operation reaches a final
  status; its TTL bounds how long a lost operation can block the wallet.
- ``recent`` holds the id of the last successful operation, for the cooldown.

The decision (reuse the in-flight operation, honour the cooldown, or accept a
new one) is one Lua script, so racing producers always agree on one operation.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import redis

_ADMIT = """
local current = redis.call('GET', KEYS[1])
if current then return {'duplicate', current} end
if ARGV[3] ~= '1' then
  local recent = redis.call('GET', KEYS[2])
  if recent then return {'cooldown', recent} end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return {'accepted', ARGV[1]}
"""

# Release the in-flight key only if it still names this operation; on success, start the cooldown.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
if ARGV[2] == '1' and tonumber(ARGV[3]) > 0 then
  redis.call('SET', KEYS[2], ARGV[1], 'EX', ARGV[3])
end
return 1
"""


@dataclasses.dataclass(frozen=True)
class Admission:
    decision: str  # 'accepted', 'duplicate' or 'cooldown'
    operation_id: str


class Admissions:
    """Parameters:
      client(redis.Redis): the Redis holding the keys.
      namespace(str): key prefix.
      inflight_ttl_ms(int): lifetime of an in-flight key (longer than any operation can legitimately take).
      cooldown_s(int): cooldown after a success; 0 disables it.
    """

    def __init__(self, client: redis.Redis, *, namespace: str, inflight_ttl_ms: int, cooldown_s: int):
        self.client = client
        self.namespace = namespace
        self.inflight_ttl_ms = inflight_ttl_ms
        self.cooldown_s = cooldown_s
        self._admit = client.register_script(_ADMIT)
        self._release = client.register_script(_RELEASE)

    def _keys(self, user_id: str, wallet: str) -> list[str]:
        return [f"{self.namespace}:sync:inflight:{user_id}:{wallet}", f"{self.namespace}:sync:recent:{user_id}:{wallet}"]

    def admit_many(self, candidates: Sequence[tuple[str, str, str, bool]]) -> list[Admission]:
        """Decide each ``(user_id, wallet, new_operation_id, force)`` in order, in one round trip."""
        pipe = self.client.pipeline(transaction=False)
        for user_id, wallet, operation_id, force in candidates:
            self._admit(keys=self._keys(user_id, wallet),
                        args=[operation_id, self.inflight_ttl_ms, "1" if force else "0"], client=pipe)
        return [Admission(d.decode(), op.decode()) for d, op in pipe.execute()]

    def release(self, user_id: str, wallet: str, operation_id: str, *, succeeded: bool,
                client: redis.client.Pipeline | None = None) -> None:
        """The operation reached a final status: free the wallet, and start its cooldown if it succeeded.
        With ``client`` (a pipeline), the release is queued there and sent with it."""
        self._release(keys=self._keys(user_id, wallet),
                      args=[operation_id, "1" if succeeded else "0", self.cooldown_s], client=client)

    def release_many(self, released: Sequence[tuple[str, str, str]]) -> None:
        """Free the wallets of operations that were accepted but never enqueued (no cooldown)."""
        pipe = self.client.pipeline(transaction=False)
        for user_id, wallet, operation_id in released:
            self._release(keys=self._keys(user_id, wallet), args=[operation_id, "0", 0], client=pipe)
        pipe.execute()
