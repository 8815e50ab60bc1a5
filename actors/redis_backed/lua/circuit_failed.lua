-- Count a failure; open the circuit when the count reaches the limit.  The count outlives the open
-- circuit (so a failed trial reopens it at once) and is forgotten after ten quiet reset periods.
-- KEYS: the failure count, the open flag.  ARGV: failures that open it, how long it stays open (ms).
local failures = redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 10)
if failures >= tonumber(ARGV[1]) then redis.call('SET', KEYS[2], failures, 'PX', ARGV[2]) end
return failures
