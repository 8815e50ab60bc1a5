-- A shared read's start and end (actors.redis_backed.shared_reads).  Functions only: the scripts that use
-- them (shared_read_claim.lua, shared_read_finish.lua, chain_read_start.lua, chain_read_end.lua) are sent
-- with this file in front (actors.redis_backed.scripts.source).
--
-- s (the read's keys): s.read, the answer stored for the window; s.lock, the lock of the one sync making
-- the read; s.wake, the lock's wake-up list (s.lock .. ':' .. its token), which the waiters block on.

-- The read made within the window if there is one, else the lock to make it (held by token for lock_ms),
-- else who holds that lock: {'read', answer}, {'mine'} or {'held', holder's token} (false if the lock
-- just went).
local function shared_read_claim(s, token, lock_ms)
  local answer = redis.call('GET', s.read)
  if answer then
    return {'read', answer}
  end
  if redis.call('SET', s.lock, token, 'NX', 'PX', lock_ms) then
    return {'mine'}
  end
  return {'held', redis.call('GET', s.lock)}
end

-- Store the answer (if there is one) for window_ms, release the lock if token still holds it, and wake the
-- syncs waiting for it.
local function shared_read_finish(s, token, answer, window_ms, lock_ms)
  if answer then
    redis.call('SET', s.read, answer, 'PX', window_ms)
  end
  if redis.call('GET', s.lock) == token then
    redis.call('DEL', s.lock)
  end
  redis.call('RPUSH', s.wake, 1)
  redis.call('PEXPIRE', s.wake, lock_ms)
end
