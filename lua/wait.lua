-- wait.lua: (no job state) marks a job as waited for, so that the script that ends it tells the
-- queue's `ended` channel (the `tell` snippet), and says where the job is now. Marking writes
-- `wait` into the job's opts entry; it does not set meta's `opts` flag (promote.lua and
-- claim.lua have nothing to act on in it).
--
-- KEYS[1]  jobs       HASH  job id -> envelope
-- KEYS[2]  dead       ZSET  job id -> time it died (ms)
-- KEYS[3]  completed  ZSET  job id -> time it completed (ms), while kept
-- KEYS[4]  opts       HASH  job id -> how it is steered (JSON)
--
-- ARGV[1]  job id
--
-- Returns "unknown" (no such job), "dead" or "completed" (it has ended: nothing marked), or
-- "waiting" (scheduled, ready or running: marked).
local id = ARGV[1]
if redis.call('HEXISTS', KEYS[1], id) == 0 then return 'unknown' end
if redis.call('ZSCORE', KEYS[2], id) then return 'dead' end
if redis.call('ZSCORE', KEYS[3], id) then return 'completed' end
local entry = redis.call('HGET', KEYS[4], id)
entry = entry and cjson.decode(entry) or {}
if not entry.wait then
  entry.wait = 1
  redis.call('HSET', KEYS[4], id, cjson.encode(entry))
end
return 'waiting'
