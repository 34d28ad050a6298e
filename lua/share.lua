-- share.lua: a promoter says it is alive and learns who else is, so that the promoters of a
-- partitioned queue split its partitions without a leader (src/share.rs). Lives in the
-- queue's own hash tag `{q}`, apart from the partitions; no job state changes here.
--
-- KEYS[1]  promoters  ZSET  promoter id -> until when it counts as alive (ms, server clock)
--
-- ARGV[1]  this promoter's id
-- ARGV[2]  how long it counts as alive from now, in ms
--
-- Returns the ids of the live promoters (this one included), in no particular order.
-- snippet: now
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
-- end snippet
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 2)
return redis.call('ZRANGE', KEYS[1], 0, -1)
