-- Put the messages of dead workers back at the head of their queues, and wake the queues' idle consumers.
-- A worker is dead when its heartbeat is older than the heartbeat timeout (Dramatiq's rule).  Dramatiq's
-- own maintenance does this only for the queue of the command that drew it (a chance per command), so a
-- quiet queue's messages could wait a minute; this runs for every queue named, at most ARGV[5] dead
-- workers a call, the most recently dead first (the long dead are producers' ids with nothing in flight).
-- The caller is alive: its own heartbeat is beaten first, as Dramatiq's dispatch does.
-- Their order went with the dead worker.  A message whose body is gone (acked elsewhere) is dropped from
-- the set.  The heartbeat entry stays: Dramatiq's maintenance, or the housekeeping after a day, removes it.
-- KEYS: the heartbeat zset.  ARGV: the namespace, now (ms, Redis's clock), the heartbeat timeout (ms), the
-- caller's broker id, the most dead workers to look at, then pairs of (queue name, its wake-up channel or "").
-- Returns how many messages went back.
local namespace = ARGV[1]
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[4])
local dead = redis.call('ZREVRANGEBYSCORE', KEYS[1], tonumber(ARGV[2]) - tonumber(ARGV[3]), '-inf',
                        'LIMIT', 0, tonumber(ARGV[5]))
local back = 0
local wake = {}
for _, worker in ipairs(dead) do
  for i = 6, #ARGV, 2 do
    local in_flight = namespace .. ':__acks__.' .. worker .. '.' .. ARGV[i]
    local ids = redis.call('SMEMBERS', in_flight)
    if #ids > 0 then
      local queue = namespace .. ':' .. ARGV[i]
      for _, id in ipairs(ids) do
        if redis.call('HEXISTS', queue .. '.msgs', id) == 1 then
          redis.call('LPUSH', queue, id)
          back = back + 1
          if ARGV[i + 1] ~= '' then wake[ARGV[i + 1]] = true end
        end
      end
      redis.call('DEL', in_flight)
    end
  end
end
-- pcall: a refused wake-up must not fail a recovery already applied (see requeue_head.lua).
for channel in pairs(wake) do redis.pcall('PUBLISH', channel, '1') end
return back
