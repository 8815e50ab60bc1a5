-- Decide a batch of admissions in order.
-- KEYS: (inflight, recent) pairs.  ARGV: the in-flight TTL (ms), the caller's deadline (ms since
-- the epoch on Redis's own clock: the caller's budget added to its reading of this clock, never its
-- host's wall time), then (operation id, force) pairs.
-- Returns one string, a decision per request joined by ',': 'a' (accepted: the wallet is taken
-- for the request's own operation id), 'd' then the id of the operation queued or running for the
-- wallet (duplicate), or 'c' then the id of its last success (cooldown).  One reply rather than two
-- per request: its parsing was a share of a batch's time in the producer.
-- Returns 'expired' if Redis runs it after the deadline: a Redis that was stalled runs the
-- commands it had received when it resumes, and by then the caller has given up and told its own
-- caller the request was refused, so the script must not take the wallet for it.
local now = redis.call('TIME')
if tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) > tonumber(ARGV[2]) then
  return 'expired'
end
local out = {}
for i = 1, #KEYS / 2 do
  local inflight, recent = KEYS[2 * i - 1], KEYS[2 * i]
  local current = redis.call('GET', inflight)
  local last = false
  if not current and ARGV[2 * i + 2] ~= '1' then last = redis.call('GET', recent) end
  if current then
    out[i] = 'd' .. current
  elseif last then
    out[i] = 'c' .. last
  else
    redis.call('SET', inflight, ARGV[2 * i + 1], 'PX', ARGV[1])
    out[i] = 'a'
  end
end
return table.concat(out, ',')
