-- End of a shared read (actors.redis_backed.shared_reads), shared_read_lib.lua in front: store the answer for
-- the window, release the lock if it is still ours, and wake the syncs waiting for it.
-- KEYS: the read, its lock, the lock's wake-up list.
-- ARGV: the lock's token, the answer, window (ms), lock lifetime (ms), 1 if there is an answer.
shared_read_finish({read = KEYS[1], lock = KEYS[2], wake = KEYS[3]}, ARGV[1], ARGV[5] == '1' and ARGV[2],
                   ARGV[3], ARGV[4])
return 1
