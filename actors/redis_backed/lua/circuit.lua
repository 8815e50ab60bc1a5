-- A circuit breaker's state, shared by every worker; time is the Redis server's.
--
-- KEYS[1] stats hash: "c<second>" calls and "f<second>" transient failures, per second of the window
-- KEYS[2] open key: set (with an expiry) while the circuit is open
-- KEYS[3] tripped key: set from the moment the circuit opens until a trial call succeeds
-- KEYS[4] trial key: holds the token of the one caller let through while the circuit is half-open
--
-- ARGV[1] "enter", ARGV[2] trial lease ms, ARGV[3] the caller's token.
--   Returns -1: closed, call.  -2: half-open and this caller holds the trial, call.  n >= 0: do not
--   call; the circuit may let a call through in n ms.
-- ARGV[1] "record", ARGV[2] "ok" or "fail", ARGV[3] the trial's token if the call was the trial, else "",
-- ARGV[4] window s, ARGV[5] least calls in the window to judge, ARGV[6] failure rate that opens, ARGV[7] open ms.
--   Returns 1 if the circuit is open now, else 0.
-- ARGV[1] "release", ARGV[2] the trial's token: frees the trial, unrecorded, if that token still holds it.
--   A trial whose lease expired may be held by another caller by now: only its holder's token frees it.
local t = redis.call('TIME')
local now_s = tonumber(t[1])

if ARGV[1] == 'enter' then
  local open_ms = redis.call('PTTL', KEYS[2])
  if open_ms > 0 then return open_ms end
  if redis.call('EXISTS', KEYS[3]) == 0 then return -1 end
  if redis.call('SET', KEYS[4], ARGV[3], 'NX', 'PX', ARGV[2]) then return -2 end
  return math.max(0, redis.call('PTTL', KEYS[4]))
end

if ARGV[1] == 'release' then
  if redis.call('GET', KEYS[4]) == ARGV[2] then redis.call('DEL', KEYS[4]) end
  return 0
end

local failed = ARGV[2] == 'fail'
local open_ms = tonumber(ARGV[7])
local tripped_ms = math.max(open_ms * 10, tonumber(ARGV[4]) * 1000)

if ARGV[3] ~= '' then
  -- The lease expired and another caller holds the trial now: its outcome, not this one, decides.
  if redis.call('GET', KEYS[4]) ~= ARGV[3] then return 0 end
  redis.call('DEL', KEYS[4])
  if failed then
    redis.call('SET', KEYS[2], '1', 'PX', open_ms)
    redis.call('PEXPIRE', KEYS[3], tripped_ms)
    return 1
  end
  redis.call('DEL', KEYS[3], KEYS[1])  -- closed again, with a clean window
  return 0
end

-- A call that began before the circuit opened says nothing the trial will not say better.
if redis.call('EXISTS', KEYS[3]) == 1 then return 0 end

local window = tonumber(ARGV[4])
redis.call('HINCRBY', KEYS[1], 'c' .. now_s, 1)
if failed then redis.call('HINCRBY', KEYS[1], 'f' .. now_s, 1) end
redis.call('EXPIRE', KEYS[1], window * 2)
if not failed then return 0 end

local calls, failures = 0, 0
local fields = redis.call('HGETALL', KEYS[1])
for i = 1, #fields, 2 do
  local name, count = fields[i], tonumber(fields[i + 1])
  local second = tonumber(string.sub(name, 2))
  if second <= now_s - window then
    redis.call('HDEL', KEYS[1], name)
  elseif string.sub(name, 1, 1) == 'c' then
    calls = calls + count
  else
    failures = failures + count
  end
end
if calls >= tonumber(ARGV[5]) and failures >= tonumber(ARGV[6]) * calls then
  redis.call('SET', KEYS[2], '1', 'PX', open_ms)
  redis.call('SET', KEYS[3], '1', 'PX', tripped_ms)
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
