-- Start of a chain read (actors.redis_backed.chain_reads) in one round trip, shared_read_lib.lua and
-- circuit_lib.lua in front: the shared read made within the window, else the read's lock, and the
-- circuit's leave to call the provider.  The lock comes first: a sync that will wait for another's read
-- never takes, and so never blocks, the circuit's half-open trial.  A lock taken here for a call the circuit
-- refuses is dropped in the same script, before any other sync could have seen it.
-- KEYS: the read, its lock, the circuit's stats, open, tripped and trial keys.
-- ARGV: the caller's token (the lock's and the trial's), the lock's lifetime (ms), 1 if reads are shared,
-- the trial's lease (ms).
-- Returns {'read', answer}, {'held', holder's token or false}, {'open', ms until a trial may go} or
-- {'go', 1 if the caller holds the trial else 0}.
local s = {read = KEYS[1], lock = KEYS[2]}
local c = {stats = KEYS[3], open = KEYS[4], tripped = KEYS[5], trial = KEYS[6]}
local share = ARGV[3] == '1'

if share then
  local claim = shared_read_claim(s, ARGV[1], ARGV[2])
  if claim[1] ~= 'mine' then return claim end
end
local state = circuit_enter(c, ARGV[4], ARGV[1])
if state < 0 then return {'go', state == -2 and 1 or 0} end
if share then redis.call('DEL', s.lock) end
return {'open', state}
