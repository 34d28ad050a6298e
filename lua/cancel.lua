-- cancel.lua: scheduled | ready | dead -> gone. A running job is never cancelled: its worker
-- holds it, and it ends through ack, retry or bury.
--
-- KEYS[1]  scheduled  ZSET  job id -> due time (ms)
-- KEYS[2]  ready      LIST  job ids
-- KEYS[3]  running    ZSET  job id -> lease deadline (ms)
-- KEYS[4]  dead       ZSET  job id -> time it died (ms)
-- KEYS[5]  jobs       HASH  job id -> envelope
-- KEYS[6]  attempts   HASH  job id -> attempts started
-- KEYS[7]  errors     HASH  job id -> last error record
-- KEYS[8]  stats      HASH  event counters: `cancelled` += 1
-- KEYS[9]  due        HASH  job id -> when it became due (ms), while ready
--
-- ARGV[1]  job id
--
-- Returns the state the job was in: "scheduled", "ready" or "dead" (it is now gone),
-- "running" (refused, nothing changed) or "unknown" (no such job).
-- Cost: O(log N) for scheduled and dead jobs; a ready job is found with LREM, O(length of ready),
-- which stays short while workers keep up.
local id = ARGV[1]
if redis.call('HEXISTS', KEYS[5], id) == 0 then return 'unknown' end
if redis.call('ZSCORE', KEYS[3], id) then return 'running' end

local state = 'unknown'
if redis.call('ZREM', KEYS[1], id) == 1 then
  state = 'scheduled'
elseif redis.call('ZREM', KEYS[4], id) == 1 then
  state = 'dead'
elseif redis.call('LREM', KEYS[2], 1, id) == 1 then
  state = 'ready'
  redis.call('HDEL', KEYS[9], id)
end
local jobs, attempts, errors, gone = KEYS[5], KEYS[6], KEYS[7], {id}
-- snippet: forget
redis.call('HDEL', jobs, unpack(gone))
redis.call('HDEL', attempts, unpack(gone))
redis.call('HDEL', errors, unpack(gone))
-- end snippet
redis.call('HINCRBY', KEYS[8], 'cancelled', 1)
return state
