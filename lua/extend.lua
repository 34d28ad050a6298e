-- extend.lua: running -> running, pushing the lease deadline out (the worker's heartbeat).
--
-- KEYS[1]  running  ZSET  job id -> lease deadline (ms)
-- KEYS[2]  leases   HASH  job id -> fencing token of the current holder
--
-- ARGV[1]  job id
-- ARGV[2]  fencing token the caller holds
-- ARGV[3]  lease length in ms, counted from now
--
-- Returns the new deadline (ms), or 0 when the caller no longer holds the lease.
if redis.call('HGET', KEYS[2], ARGV[1]) ~= ARGV[2] then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local deadline = now + tonumber(ARGV[3])
redis.call('ZADD', KEYS[1], 'XX', deadline, ARGV[1])
return deadline
