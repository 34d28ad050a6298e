-- ack.lua: running -> gone. The job succeeded; everything stored for it is deleted.
--
-- KEYS[1]  running   ZSET  job id -> lease deadline (ms)
-- KEYS[2]  leases    HASH  job id -> fencing token of the current holder
-- KEYS[3]  jobs      HASH  job id -> envelope
-- KEYS[4]  attempts  HASH  job id -> attempts started
-- KEYS[5]  errors    HASH  job id -> last error record
-- KEYS[6]  stats     HASH  event counters: `completed` += jobs acknowledged
--
-- ARGV[2k - 1], ARGV[2k]  job id and the fencing token its caller holds, for k = 1 .. #ARGV / 2
--
-- Returns {r_1, ...}: 1 acknowledged, 0 refused because the caller no longer holds the lease.
-- Every step is O(1) or O(log N): no list is scanned.
local out = {}
local done = 0
for i = 1, #ARGV, 2 do
  local id = ARGV[i]
  if redis.call('HGET', KEYS[2], id) == ARGV[i + 1] then
    redis.call('ZREM', KEYS[1], id)
    redis.call('HDEL', KEYS[2], id)
    redis.call('HDEL', KEYS[3], id)
    redis.call('HDEL', KEYS[4], id)
    redis.call('HDEL', KEYS[5], id)
    out[#out + 1] = 1
    done = done + 1
  else
    out[#out + 1] = 0
  end
end
if done > 0 then redis.call('HINCRBY', KEYS[6], 'completed', done) end
return out
