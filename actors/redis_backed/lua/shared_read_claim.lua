-- Start of a shared read (actors.redis_backed.shared_reads), in one round trip; shared_read_lib.lua in front.
-- KEYS: the read, its lock.  ARGV: a token for the lock, the lock's lifetime (ms).
-- Returns {'read', answer}, {'mine'} or {'held', holder's token} (false if the lock just went).
return shared_read_claim({read = KEYS[1], lock = KEYS[2]}, ARGV[1], ARGV[2])
