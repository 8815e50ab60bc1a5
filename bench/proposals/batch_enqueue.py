"""Proposal: a batch of requests is one Lua call per step in Redis, not one per request.

``request_syncs`` (profiled with ``bench.profile_hotpaths producer``) spends most of its time in
Redis: ``admit_many`` runs the admission script once per request, and ``enqueue_batch`` runs
Dramatiq's ``dispatch`` script once per message, each with its whole preamble (a heartbeat ZADD
for the producer, a 5% chance of a maintenance pass with ``KEYS`` over the whole keyspace).  Here:

- admission: one script call decides the whole batch, in order (same rules: in flight -> that id;
  cooldown unless forced -> the recent id; else take the in-flight key);
- enqueue: one script call per Redis queue stores every message of the batch in Dramatiq's own
  layout (``{ns}:{queue}.msgs`` hash, ``{ns}:{queue}`` list), what ``dispatch``'s ``enqueue`` does
  per message, without the producer heartbeat (a producer holds no acks) or maintenance (the
  workers' fetches and acks run it), and the wake-ups of the queues (``actors.wakeup``) in the same
  round trip, as the product's ``enqueue_batch``.  Middleware hooks run as before.

Producer module: import it before ``actors`` is used (``bench.project enqueue --producer-module
bench.proposals.batch_enqueue``).
"""

from __future__ import annotations

import actors  # noqa: F401
from actors.admission import Admission, Admissions
from actors.broker import SyncBroker
from actors.wakeup import wake_channel

_ENQUEUE_MANY = """
local queue = KEYS[1]
local messages = KEYS[2]
local ids = {}
for i = 1, #ARGV, 2 do
  redis.call('HSET', messages, ARGV[i], ARGV[i + 1])
  ids[#ids + 1] = ARGV[i]
  if #ids == 500 then
    redis.call('RPUSH', queue, unpack(ids))
    ids = {}
  end
end
if #ids > 0 then redis.call('RPUSH', queue, unpack(ids)) end
return #ARGV / 2
"""

_ADMIT_MANY = """
local out = {}
local ttl = ARGV[1]
for i = 1, #KEYS / 2 do
  local inflight, recent = KEYS[2 * i - 1], KEYS[2 * i]
  local op, force = ARGV[2 * i], ARGV[2 * i + 1]
  local current = redis.call('GET', inflight)
  if current then
    out[#out + 1] = 'duplicate'; out[#out + 1] = current
  else
    local last = false
    if force ~= '1' then last = redis.call('GET', recent) end
    if last then
      out[#out + 1] = 'cooldown'; out[#out + 1] = last
    else
      redis.call('SET', inflight, op, 'PX', ttl)
      out[#out + 1] = 'accepted'; out[#out + 1] = op
    end
  end
end
return out
"""


def _enqueue_batch(self, messages):
    script = getattr(self, "_enqueue_many", None)
    if script is None:
        script = self._enqueue_many = self.client.register_script(_ENQUEUE_MANY)
    by_queue: dict[str, list] = {}
    sent = []
    for message in messages:
        if "redis_message_id" not in message.options:
            message = self.prepare(message)
        self.emit_before("enqueue", message, None)
        by_queue.setdefault(message.queue_name, []).extend((message.options["redis_message_id"], message.encode()))
        sent.append(message)
    pipe = self.client.pipeline(transaction=False)
    for queue_name, args in by_queue.items():
        for start in range(0, len(args), 2000):  # at most 1,000 messages per call
            script(keys=[f"{self.namespace}:{queue_name}", f"{self.namespace}:{queue_name}.msgs"],
                   args=args[start:start + 2000], client=pipe)
        pipe.publish(wake_channel(self.namespace, queue_name), "1")  # after its messages, as the product does
    pipe.execute()
    for message in sent:
        self.emit_after("enqueue", message, None)
    return sent


def _admit_many(self, candidates):
    script = getattr(self, "_admit_many_script", None)
    if script is None:
        script = self._admit_many_script = self.client.register_script(_ADMIT_MANY)
    out: list[Admission] = []
    pipe = self.client.pipeline(transaction=False)
    for start in range(0, len(candidates), 1000):
        keys, args = [], [self.inflight_ttl_ms]
        for user_id, wallet, operation_id, force in candidates[start:start + 1000]:
            keys += self._keys(user_id, wallet)
            args += [operation_id, "1" if force else "0"]
        script(keys=keys, args=args, client=pipe)
    for flat in pipe.execute():
        out += [Admission(flat[i].decode(), flat[i + 1].decode()) for i in range(0, len(flat), 2)]
    return out


SyncBroker.enqueue_batch = _enqueue_batch
Admissions.admit_many = _admit_many
