-- End of a chain read (actors.redis_backed.chain_reads) in one round trip, shared_read_lib.lua,
-- circuit_lib.lua and chain_read_lib.lua in front: the shared read finished (its answer stored, its lock
-- released, its waiters woken), the provider's call recorded in its circuit, and the cached values (prices)
-- the answer needs.
-- KEYS: the read, its lock, the lock's wake-up list, the circuit's stats, open, tripped and trial keys, then
-- the cache keys to read.
-- ARGV[1] the caller's token, ARGV[2] 1 if the caller holds the read's lock (reads are shared), ARGV[3] the
-- answer ('' and ARGV[4] 0 if there is none), ARGV[4] 1 if there is an answer, ARGV[5] window (ms),
-- ARGV[6] lock lifetime (ms), ARGV[7] the call's outcome for the circuit: "ok", "fail", "release" (the
-- provider was not asked: free the trial unjudged) or "none" (the circuit was not entered), ARGV[8] the
-- trial's token if the call was the trial else "", ARGV[9] window s, ARGV[10] least calls in the window to
-- judge, ARGV[11] failure rate that opens, ARGV[12] open ms.
-- Returns the values of the cache keys (false for a missing one).
chain_read_end({read = KEYS[1], lock = KEYS[2], wake = KEYS[3]},
               {stats = KEYS[4], open = KEYS[5], tripped = KEYS[6], trial = KEYS[7]},
               ARGV[1], ARGV[2] == '1', ARGV[4] == '1' and ARGV[3], ARGV[5], ARGV[6], ARGV[7], ARGV[8],
               {tonumber(ARGV[9]), tonumber(ARGV[10]), tonumber(ARGV[11]), tonumber(ARGV[12])})
if #KEYS > 7 then
  return redis.call('MGET', unpack(KEYS, 8))
end
return {}
