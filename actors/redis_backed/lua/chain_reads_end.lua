-- End of the chain reads of an attempt (actors.redis_backed.attempt_reads) in one round trip,
-- shared_read_lib.lua, circuit_lib.lua and chain_read_lib.lua in front: each chain read made by this attempt
-- ended as chain_read_end.lua alone would end it, then the cached values (prices) every answer needs.
-- Multi-slot like chain_reads_start.lua.
-- KEYS: for each ended chain, seven: the read, its lock, the lock's wake-up list, the circuit's stats, open,
-- tripped and trial keys; then the cache keys to read.
-- ARGV[1] the number of ended chains, ARGV[2] window (ms), ARGV[3] lock lifetime (ms), ARGV[4..7] how a
-- circuit judges (window s, least calls in the window, failure rate that opens, open ms), then for each
-- ended chain six: its token, 1 if it holds the read's lock, 1 if there is an answer, the answer (''
-- if none), the call's outcome for the circuit, the trial's token or ''.
-- Returns the values of the cache keys (false for a missing one).
local n = tonumber(ARGV[1])
local judging = {tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])}
for i = 1, n do
  local k, a = (i - 1) * 7, 7 + (i - 1) * 6
  chain_read_end({read = KEYS[k + 1], lock = KEYS[k + 2], wake = KEYS[k + 3]},
                 {stats = KEYS[k + 4], open = KEYS[k + 5], tripped = KEYS[k + 6], trial = KEYS[k + 7]},
                 ARGV[a + 1], ARGV[a + 2] == '1', ARGV[a + 3] == '1' and ARGV[a + 4], ARGV[2], ARGV[3],
                 ARGV[a + 5], ARGV[a + 6], judging)
end
if #KEYS > n * 7 then
  return redis.call('MGET', unpack(KEYS, n * 7 + 1))
end
return {}
