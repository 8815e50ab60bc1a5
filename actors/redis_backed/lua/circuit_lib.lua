-- A circuit breaker's state, shared by every worker; time is the Redis server's.  Functions only: the
-- scripts that use them (circuit.lua, chain_read_start.lua, chain_read_end.lua) are sent with this
-- file in front (actors.redis_backed.scripts.source).
--
-- c (the circuit's keys): c.stats hash ("c<second>" calls and "f<second>" transient failures, per second
-- of the window); c.open, set (with an expiry) while the circuit is open; c.tripped, set from the moment
-- the circuit opens until a trial call succeeds; c.trial, the token of the one caller let through while
-- the circuit is half-open.

-- Returns -1: closed, call.  -2: half-open and the caller (token) holds the trial, call.  n >= 0: do not
-- call; the circuit may let a call through in n ms.
local function circuit_enter(c, lease_ms, token)
  local open_ms = redis.call('PTTL', c.open)
  if open_ms > 0 then return open_ms end
  if redis.call('EXISTS', c.tripped) == 0 then return -1 end
  if redis.call('SET', c.trial, token, 'NX', 'PX', lease_ms) then return -2 end
  return math.max(0, redis.call('PTTL', c.trial))
end

-- Frees the trial, unrecorded, if token still holds it.  A trial whose lease expired may be held by another
-- caller by now: only its holder's token frees it.
local function circuit_release(c, token)
  if redis.call('GET', c.trial) == token then redis.call('DEL', c.trial) end
end

-- Records a call's outcome: failed (a transient failure) or not; trial, the trial's token if the call was
-- the trial, else ''.  Returns 1 if the circuit is open now, else 0.
local function circuit_record(c, failed, trial, window, min_calls, failure_rate, open_ms)
  local now_s = tonumber(redis.call('TIME')[1])
  local tripped_ms = math.max(open_ms * 10, window * 1000)
  if trial ~= '' then
    -- The lease expired and another caller holds the trial now: its outcome, not this one, decides.
    if redis.call('GET', c.trial) ~= trial then return 0 end
    redis.call('DEL', c.trial)
    if failed then
      redis.call('SET', c.open, '1', 'PX', open_ms)
      redis.call('PEXPIRE', c.tripped, tripped_ms)
      return 1
    end
    redis.call('DEL', c.tripped, c.stats)  -- closed again, with a clean window
    return 0
  end

  -- A call that began before the circuit opened says nothing the trial will not say better.
  if redis.call('EXISTS', c.tripped) == 1 then return 0 end

  redis.call('HINCRBY', c.stats, 'c' .. now_s, 1)
  if failed then redis.call('HINCRBY', c.stats, 'f' .. now_s, 1) end
  redis.call('EXPIRE', c.stats, window * 2)
  if not failed then return 0 end

  local calls, failures = 0, 0
  local fields = redis.call('HGETALL', c.stats)
  for i = 1, #fields, 2 do
    local name, count = fields[i], tonumber(fields[i + 1])
    local second = tonumber(string.sub(name, 2))
    if second <= now_s - window then
      redis.call('HDEL', c.stats, name)
    elseif string.sub(name, 1, 1) == 'c' then
      calls = calls + count
    else
      failures = failures + count
    end
  end
  if calls >= min_calls and failures >= failure_rate * calls then
    redis.call('SET', c.open, '1', 'PX', open_ms)
    redis.call('SET', c.tripped, '1', 'PX', tripped_ms)
    redis.call('DEL', c.stats)
    return 1
  end
  return 0
end
