-- Renew the leases that still carry their holder's token.
-- KEYS: the leases.  ARGV: the lifetime (ms), then each lease's token.
-- Returns the (1-based) positions of the leases renewed.
local renewed = {}
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[i + 1] then
    redis.call('PEXPIRE', key, ARGV[1])
    renewed[#renewed + 1] = i
  end
end
return renewed
