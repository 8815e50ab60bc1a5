-- Start of a shared read (actors.redis_backed.shared_reads), in one round trip: the read made within
-- the window if there is one, else the lock to make it, else who holds that lock.
-- KEYS: the read, its lock.  ARGV: a token for the lock, the lock's lifetime (ms).
-- Returns {'read', answer}, {'mine'} or {'held', holder's token} (false if the lock just went).
local answer = redis.call('GET', KEYS[1])
if answer then
  return {'read', answer}
end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {'mine'}
end
return {'held', redis.call('GET', KEYS[2])}
