-- Start of a chain read (actors.redis_backed.chain_reads) in one round trip, shared_read_lib.lua,
-- circuit_lib.lua and chain_read_lib.lua in front: see chain_read_start in chain_read_lib.lua.
-- KEYS: the read, its lock, the circuit's stats, open, tripped and trial keys.
-- ARGV: the caller's token (the lock's and the trial's), the lock's lifetime (ms), 1 if reads are shared,
-- the trial's lease (ms).
-- Returns {'read', answer}, {'held', holder's token or false}, {'open', ms until a trial may go} or
-- {'go', 1 if the caller holds the trial else 0}.
return chain_read_start({read = KEYS[1], lock = KEYS[2]},
                        {stats = KEYS[3], open = KEYS[4], tripped = KEYS[5], trial = KEYS[6]},
                        ARGV[1], ARGV[2], ARGV[3] == '1', ARGV[4])
