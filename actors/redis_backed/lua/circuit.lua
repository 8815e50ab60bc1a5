-- A circuit breaker's call (actors.redis_backed.circuits), with circuit_lib.lua in front.
--
-- KEYS: the circuit's stats hash, open key, tripped key, trial key (see circuit_lib.lua).
--
-- ARGV[1] "enter", ARGV[2] trial lease ms, ARGV[3] the caller's token.
--   Returns -1: closed, call.  -2: half-open and this caller holds the trial, call.  n >= 0: do not
--   call; the circuit may let a call through in n ms.
-- ARGV[1] "record", ARGV[2] "ok" or "fail", ARGV[3] the trial's token if the call was the trial, else "",
-- ARGV[4] window s, ARGV[5] least calls in the window to judge, ARGV[6] failure rate that opens, ARGV[7] open ms.
--   Returns 1 if the circuit is open now, else 0.
-- ARGV[1] "release", ARGV[2] the trial's token: frees the trial, unrecorded, if that token still holds it.
local c = {stats = KEYS[1], open = KEYS[2], tripped = KEYS[3], trial = KEYS[4]}

if ARGV[1] == 'enter' then
  return circuit_enter(c, ARGV[2], ARGV[3])
end
if ARGV[1] == 'release' then
  circuit_release(c, ARGV[2])
  return 0
end
return circuit_record(c, ARGV[2] == 'fail', ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]),
                      tonumber(ARGV[7]))
