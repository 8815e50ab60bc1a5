-- Release the in-flight key only if it still names this operation; on success, start the cooldown.
-- KEYS: inflight, recent.  ARGV: operation id, '1' if it succeeded, the cooldown (s).
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
if ARGV[2] == '1' and tonumber(ARGV[3]) > 0 then
  redis.call('SET', KEYS[2], ARGV[1], 'EX', ARGV[3])
end
return 1
