-- retry.lua: running -> scheduled. A failed attempt waits out its backoff, or a snoozed or
-- handed-back job waits without using an attempt.
--
-- KEYS[1]  running    ZSET  job id -> lease deadline (ms)
-- KEYS[2]  leases     HASH  job id -> fencing token of the current holder
-- KEYS[3]  scheduled  ZSET  job id -> due time (ms)
-- KEYS[4]  attempts   HASH  job id -> attempts started
-- KEYS[5]  errors     HASH  job id -> last error record (JSON)
-- KEYS[6]  stats      HASH  event counters: `retried` += 1 when the attempt counts
--
-- ARGV[1]  wake channel, woken (see the `wake` snippet) when the job becomes the head of scheduled
-- ARGV[2]  job id
-- ARGV[3]  fencing token the caller holds
-- ARGV[4]  delay in ms: the job is due at server now + delay
-- ARGV[5]  "1": the attempt counts (a failure); "0": it does not (snooze, hand-back)
-- ARGV[6]  error reason ("" for none: the last error record is left as it is)
-- ARGV[7]  error message
--
-- Returns the new due time (ms), or 0 when the caller no longer holds the lease.
local id, token, reason, message = ARGV[2], ARGV[3], ARGV[6], ARGV[7]
-- snippet: lease check
if redis.call('HGET', KEYS[2], id) ~= token then return 0 end
-- end snippet
-- snippet: wake
-- Wakes the queue's promoters (src/wake.rs) with the due time `due`: a sharded SPUBLISH on a
-- cluster (the channel's hash tag keeps it on this shard), a classic PUBLISH on one server.
-- `announce` adds a classic PUBLISH on a cluster, which reaches every node: sent for a
-- queue's first job, so that a promoter of a whole namespace finds the new queue at once.
local function wake(due, announce)
  if not string.find(redis.call('INFO', 'cluster'), 'cluster_enabled:1', 1, true) then
    redis.call('PUBLISH', ARGV[1], due)
    return
  end
  redis.call('SPUBLISH', ARGV[1], due)
  if announce then redis.call('PUBLISH', ARGV[1], due) end
end
-- end snippet
-- snippet: now
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
-- end snippet

redis.call('ZREM', KEYS[1], id)
redis.call('HDEL', KEYS[2], id)
if ARGV[5] == '0' then
  redis.call('HINCRBY', KEYS[4], id, -1)
else
  redis.call('HINCRBY', KEYS[6], 'retried', 1)
end
if reason ~= '' then
  -- snippet: error record
  redis.call('HSET', KEYS[5], id, cjson.encode({
    reason = reason,
    message = message,
    at = now,
    attempt = tonumber(redis.call('HGET', KEYS[4], id) or '0'),
  }))
  -- end snippet
end

local due = now + tonumber(ARGV[4])
local scheduled = KEYS[3]
-- snippet: schedule and wake
local head = redis.call('ZRANGE', scheduled, 0, 0, 'WITHSCORES')
redis.call('ZADD', scheduled, due, id)
if head[2] == nil or due < tonumber(head[2]) then
  wake(due, false)
end
-- end snippet
return due
