-- Put the messages of dead workers back at the head of their queues, and wake the queues' idle consumers.
-- A worker is dead when its heartbeat is older than the heartbeat timeout (Dramatiq's rule).  Dramatiq's
-- own maintenance does this only for the queue of the command that drew it (a chance per command), so a
-- quiet queue's messages could wait minutes; this runs on every reconciler pass, for every queue named.
-- Their order went with the dead worker.  A message whose body is gone (acked elsewhere) is dropped from
-- the set.  The heartbeat entry stays: Dramatiq's maintenance removes it once no in-flight set is left.
-- KEYS: the heartbeat zset.  ARGV: the namespace, now (ms, Redis's clock), the heartbeat timeout (ms),
-- then pairs of (queue name, its wake-up channel or "").
-- Returns how many messages went back.
local namespace = ARGV[1]
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], 0, tonumber(ARGV[2]) - tonumber(ARGV[3]))
local back = 0
local wake = {}
for _, worker in ipairs(dead) do
  for i = 4, #ARGV, 2 do
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
