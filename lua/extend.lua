-- extend.lua: running -> running, pushing the lease deadline out (the worker's heartbeat), and
-- telling the worker whether the job's cancellation was asked (cancel.lua).
--
-- KEYS[1]  running  ZSET  job id -> lease deadline (ms)
-- KEYS[2]  leases   HASH  job id -> fencing token of the current holder
-- KEYS[3]  opts     HASH  job id -> how it is steered (JSON: `cancel` once cancellation is asked)
--
-- ARGV[1]  job id
-- ARGV[2]  fencing token the caller holds
-- ARGV[3]  lease length in ms, counted from now
--
-- Returns the new deadline (ms), negated when the job's cancellation was asked (the lease is
-- extended all the same, so that the worker can stop the handler and report); 0 when the
-- caller no longer holds the lease.
local id, token = ARGV[1], ARGV[2]
-- snippet: lease check
if redis.call('HGET', KEYS[2], id) ~= token then return 0 end
-- end snippet
-- snippet: now
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
-- end snippet
local deadline = now + tonumber(ARGV[3])
redis.call('ZADD', KEYS[1], 'XX', deadline, id)
local entry = redis.call('HGET', KEYS[3], id)
if entry and cjson.decode(entry).cancel then return -deadline end
return deadline
