-- Put messages back at the head of their queue: those of ARGV[2..] still in the worker's in-flight set
-- (one acked meanwhile is left alone), the last first, so they keep their order and run before what was
-- enqueued after they were fetched.  Dramatiq's own requeue puts them at the tail.  Then, if any went
-- back and ARGV[1] names the queue's wake-up channel, the queue's idle consumers are woken.
-- KEYS: the in-flight set, the queue's list, its hash.  ARGV: the wake-up channel or "", Redis ids.
-- Returns how many went back.
local back = 0
for i = #ARGV, 2, -1 do
  if redis.call('SREM', KEYS[1], ARGV[i]) > 0 and redis.call('HEXISTS', KEYS[3], ARGV[i]) == 1 then
    redis.call('LPUSH', KEYS[2], ARGV[i])
    back = back + 1
  end
end
-- pcall: a refused wake-up (an ACL on channels) must not fail a requeue already applied; idle
-- consumers then find the messages at their next look.
if back > 0 and ARGV[1] ~= '' then redis.pcall('PUBLISH', ARGV[1], '1') end
return back
