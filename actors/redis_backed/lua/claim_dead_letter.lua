-- Take one dead letter out of its queue; return its body, or false if it is not there (any more).
-- KEYS: the dead-letter zset, its bodies' hash.  ARGV: the dead letter's Redis id.
if redis.call('zrem', KEYS[1], ARGV[1]) == 1 then
  local body = redis.call('hget', KEYS[2], ARGV[1])
  redis.call('hdel', KEYS[2], ARGV[1])
  return body or ''
end
return false
