-- Decide a batch of admissions in order.
-- KEYS: (inflight, recent) pairs.  ARGV: the in-flight TTL (ms), the caller's deadline (ms since
-- the epoch on Redis's own clock: the caller's budget added to its reading of this clock, never its
-- host's wall time), then (operation id, force) pairs.
-- Returns (decision, operation id) pairs, or {'expired'} if Redis runs it after the deadline: a
-- Redis that was stalled runs the commands it had received when it resumes, and by then the caller
-- has given up and told its own caller the request was refused, so the script must not take the
-- wallet for it.
local now = redis.call('TIME')
if tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) > tonumber(ARGV[2]) then
  return {'expired'}
end
local out = {}
for i = 1, #KEYS / 2 do
  local inflight, recent = KEYS[2 * i - 1], KEYS[2 * i]
  local op, force = ARGV[2 * i + 1], ARGV[2 * i + 2]
  local current = redis.call('GET', inflight)
  local last = false
  if not current and force ~= '1' then last = redis.call('GET', recent) end
  if current then
    out[#out + 1] = 'duplicate'; out[#out + 1] = current
  elseif last then
    out[#out + 1] = 'cooldown'; out[#out + 1] = last
  else
    redis.call('SET', inflight, op, 'PX', ARGV[1])
    out[#out + 1] = 'accepted'; out[#out + 1] = op
  end
end
return out
