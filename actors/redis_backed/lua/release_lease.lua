-- Delete the lease KEYS[1] if it still carries the token ARGV[1]; returns 1 if it did.
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
