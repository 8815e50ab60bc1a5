-- End of a shared read (actors.redis_backed.shared_reads): store the answer for the window, release the lock if
-- it is still ours, and wake the syncs waiting for it.
-- KEYS: the read, its lock, the lock's wake-up list.
-- ARGV: the lock's token, the answer, window (ms), lock lifetime (ms), 1 if there is an answer.
if ARGV[5] == '1' then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
end
if redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('DEL', KEYS[2])
end
redis.call('RPUSH', KEYS[3], 1)
redis.call('PEXPIRE', KEYS[3], ARGV[4])
return 1
