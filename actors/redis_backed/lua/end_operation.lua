-- The end of an operation in Redis, idempotent: whoever sees the final audit row (the attempt that
-- committed it, a redelivery, a producer finding the wallet still held) may run it, any number of
-- times, and the wallet is freed once and the completion events are appended once.
-- KEYS: inflight, recent, ended (the once-marker), the events stream.
-- ARGV: operation id, '1' if it succeeded, the cooldown (s), the marker's TTL (ms), the stream's
-- MAXLEN (0: no events), then each event as (field count, field, value, field, value, ...).
-- Returns {'ended', appended} the first time ({'ended', 'dropped: <error>'} if an XADD was refused:
-- the end stands, the events are lost and counted), {'already'} afterwards.
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
if not redis.call('SET', KEYS[3], '1', 'NX', 'PX', ARGV[4]) then
  return {'already'}
end
if ARGV[2] == '1' and tonumber(ARGV[3]) > 0 then
  redis.call('SET', KEYS[2], ARGV[1], 'EX', ARGV[3])
end
local maxlen, appended, i = tonumber(ARGV[5]), 0, 6
while i <= #ARGV do
  local n = tonumber(ARGV[i])
  local fields = {}
  for j = 1, 2 * n do fields[j] = ARGV[i + j] end
  i = i + 2 * n + 1
  if maxlen > 0 then
    local ok, err = pcall(redis.call, 'XADD', KEYS[4], 'MAXLEN', '~', maxlen, '*', unpack(fields))
    if not ok then
      return {'ended', 'dropped: ' .. tostring(err.err or err)}
    end
    appended = appended + 1
  end
end
return {'ended', appended}
