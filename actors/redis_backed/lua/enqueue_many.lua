-- Store messages as Dramatiq's dispatch script does for "enqueue" (dramatiq 2.x): the body in the
-- queue's ".msgs" hash under its Redis id, the id at the tail of the queue's list.
-- KEYS: the queue's list, its hash.  ARGV: (Redis id, body) pairs.  Returns how many were stored.
local ids = {}
for i = 1, #ARGV, 2 do
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
  ids[#ids + 1] = ARGV[i]
  if #ids == 500 then
    redis.call('RPUSH', KEYS[1], unpack(ids))
    ids = {}
  end
end
if #ids > 0 then redis.call('RPUSH', KEYS[1], unpack(ids)) end
return #ARGV / 2
