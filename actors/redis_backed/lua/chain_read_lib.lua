-- One chain read's start and end (actors.redis_backed.chain_reads, .attempt_reads).  Functions only, with
-- shared_read_lib.lua and circuit_lib.lua in front of this file: the scripts that use them read one chain
-- (chain_read_start.lua, chain_read_end.lua) or every chain of an attempt (chain_reads_start.lua,
-- chain_reads_end.lua), so a chain's gates behave the same whichever script passes them.
--
-- s: the shared read's keys (shared_read_lib.lua); c: the circuit's keys (circuit_lib.lua).

-- The shared read made within the window, else the read's lock, and the circuit's leave to call the
-- provider.  The lock comes first: a sync that will wait for another's read never takes, and so never
-- blocks, the circuit's half-open trial.  A lock taken here for a call the circuit refuses is dropped at
-- once, before any other sync could have seen it.
-- Returns {'read', answer}, {'held', holder's token or false}, {'open', ms until a trial may go} or
-- {'go', 1 if the caller holds the trial else 0}.
local function chain_read_start(s, c, token, lock_ms, share, lease_ms)
  if share then
    local claim = shared_read_claim(s, token, lock_ms)
    if claim[1] ~= 'mine' then return claim end
  end
  local state = circuit_enter(c, lease_ms, token)
  if state < 0 then return {'go', state == -2 and 1 or 0} end
  if share then redis.call('DEL', s.lock) end
  return {'open', state}
end

-- The shared read finished if the caller holds its lock (share: its answer stored, or false if there is none;
-- the lock released, the waiters woken) and the provider's call recorded in the circuit.  outcome: "ok",
-- "fail", "release" (the provider was not asked: free the trial unjudged) or "none" (the circuit was not
-- entered); trial: the trial's token if the call was the trial, else ''; judging: {window s, least calls in
-- the window, failure rate that opens, open ms}.
local function chain_read_end(s, c, token, share, answer, window_ms, lock_ms, outcome, trial, judging)
  if share then
    shared_read_finish(s, token, answer, window_ms, lock_ms)
  end
  if outcome == 'release' then
    if trial ~= '' then circuit_release(c, trial) end
  elseif outcome ~= 'none' then
    circuit_record(c, outcome == 'fail', trial, judging[1], judging[2], judging[3], judging[4])
  end
end
