-- A provider's outbound budget, shared by every worker: two token buckets (requests and compute
-- units) and a pause, in one atomic step.  Time is the Redis server's, so workers' clocks never disagree.
--
-- KEYS[1] the buckets' hash (fields: req, units, at_ms)   KEYS[2] the pause key (set while paused)
-- ARGV[1] mode: "take" or "pause"
-- take:  ARGV[2] requests/s  ARGV[3] request burst  ARGV[4] units/s  ARGV[5] unit burst  ARGV[6] units wanted
--        (a rate of 0 means that bucket is unlimited).  Returns 0 when the request may go (its tokens are
--        taken), else the milliseconds to wait before asking again (nothing is taken).
-- pause: ARGV[2] milliseconds.  Extends the pause to at least that long from now; returns the pause left.
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local paused = redis.call('PTTL', KEYS[2])

if ARGV[1] == 'pause' then
  local ms = tonumber(ARGV[2])
  if ms > paused then
    redis.call('SET', KEYS[2], '1', 'PX', ms)
    return ms
  end
  return paused
end

if paused > 0 then return paused end

local req_rate, req_burst = tonumber(ARGV[2]), tonumber(ARGV[3])
local unit_rate, unit_burst = tonumber(ARGV[4]), tonumber(ARGV[5])
local units = math.min(tonumber(ARGV[6]), unit_burst)
local state = redis.call('HMGET', KEYS[1], 'req', 'units', 'at_ms')
local at_ms = tonumber(state[3]) or now_ms
local elapsed_s = math.max(0, now_ms - at_ms) / 1000
local req = math.min(req_burst, (tonumber(state[1]) or req_burst) + elapsed_s * req_rate)
local have_units = math.min(unit_burst, (tonumber(state[2]) or unit_burst) + elapsed_s * unit_rate)

local wait_ms = 0
if req_rate > 0 and req < 1 then wait_ms = math.max(wait_ms, math.ceil((1 - req) / req_rate * 1000)) end
if unit_rate > 0 and have_units < units then
  wait_ms = math.max(wait_ms, math.ceil((units - have_units) / unit_rate * 1000))
end
if wait_ms == 0 then
  if req_rate > 0 then req = req - 1 end
  if unit_rate > 0 then have_units = have_units - units end
end
redis.call('HSET', KEYS[1], 'req', tostring(req), 'units', tostring(have_units), 'at_ms', now_ms)
-- A bucket left alone refills to full; forgetting it after a minute changes nothing.
redis.call('PEXPIRE', KEYS[1], 60000)
return wait_ms
