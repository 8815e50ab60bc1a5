-- A waiter of a shared read (actors.redis_backed.shared_reads), woken, passes the wake-up on to the next
-- one. BLPOP emptied the list, and Redis deleted it with its expiry: the push sets the expiry again,
-- in the same call, so no wake-up list outlives the read.
-- KEYS: the wake-up list.  ARGV: its lifetime (ms).
redis.call('LPUSH', KEYS[1], 1)
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
