-- Start of every chain read of an attempt (actors.redis_backed.attempt_reads) in one round trip,
-- shared_read_lib.lua, circuit_lib.lua and chain_read_lib.lua in front: each chain as chain_read_start.lua
-- alone would start it.
-- The keys of several wallets and chains in one script: on a Redis Cluster they would have to share a hash
-- slot (a hash tag per wallet, with the circuits' keys per wallet too) or be sent chain by chain; the one
-- Redis the project runs on takes them as they are (docs/capacity.md).
-- KEYS: for each chain, six: the read, its lock, the circuit's stats, open, tripped and trial keys.
-- ARGV[1] the locks' lifetime (ms), ARGV[2] 1 if reads are shared, ARGV[3] the trials' lease (ms), then
-- each chain's token (its lock's and its trial's).
-- Returns, for each chain, what chain_read_start returns.
local replies = {}
local share = ARGV[2] == '1'
for i = 1, #KEYS / 6 do
  local k = (i - 1) * 6
  replies[i] = chain_read_start({read = KEYS[k + 1], lock = KEYS[k + 2]},
                                {stats = KEYS[k + 3], open = KEYS[k + 4], tripped = KEYS[k + 5], trial = KEYS[k + 6]},
                                ARGV[3 + i], ARGV[1], share, ARGV[3])
end
return replies
