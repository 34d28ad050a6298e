-- ack.lua: running -> gone. The jobs succeeded; everything stored for them is deleted.
--
-- KEYS[1]  running   ZSET  job id -> lease deadline (ms)
-- KEYS[2]  leases    HASH  job id -> fencing token of the current holder
-- KEYS[3]  jobs      HASH  job id -> envelope
-- KEYS[4]  attempts  HASH  job id -> attempts started
-- KEYS[5]  errors    HASH  job id -> last error record
-- KEYS[6]  stats     HASH  event counters: `completed` += jobs acknowledged
-- KEYS[7]  done      ZSET  job id -> time acknowledged (ms), kept for the dedup window
-- KEYS[8]  opts      HASH  job id -> how it is steered (schedule.lua, cancel.lua)
--
-- ARGV[1]  dedup window in ms: acknowledged ids stay in `done` this long, so that a schedule
--          call sent again after a lost reply cannot make the job a second time (0: keep none)
-- ARGV[2]  the queue's `ended` channel: told (see the `tell` snippet) when an acknowledged
--          job had an opts entry, in case its cancellation was asked
-- ARGV[2k + 1], ARGV[2k + 2]  job id and the fencing token its caller holds, for k = 1 .. n
--                         (at most a few thousand pairs: ids are unpacked onto Lua's stack)
--
-- Returns {r_1, ...}: 1 acknowledged, 0 refused because the caller no longer holds the lease.
-- One HMGET checks every token; the deletes take the whole batch in one command each.
-- snippet: tell
-- Tells whoever waits on the queue's `ended` channel (`channel`; a `Queue::cancel` caller
-- waiting for a running job) how jobs whose cancellation was asked ended: `message` is
-- "stopped" or "finished", then each id, one per line (ids hold no control characters). A
-- sharded SPUBLISH on a cluster, a classic PUBLISH on one server.
local function tell(channel, message)
  if string.find(redis.call('INFO', 'cluster'), 'cluster_enabled:1', 1, true) then
    redis.call('SPUBLISH', channel, message)
  else
    redis.call('PUBLISH', channel, message)
  end
end
-- end snippet
local window = tonumber(ARGV[1])
local ids = {}
for i = 3, #ARGV, 2 do ids[#ids + 1] = ARGV[i] end
local out = {}
if #ids == 0 then return out end
local tokens = redis.call('HMGET', KEYS[2], unpack(ids))
local done, seen = {}, {}
for k, id in ipairs(ids) do
  if tokens[k] == ARGV[2 * k + 2] and not seen[id] then
    seen[id] = true
    done[#done + 1] = id
    out[k] = 1
  else
    out[k] = 0
  end
end
if #done > 0 then
  redis.call('ZREM', KEYS[1], unpack(done))
  redis.call('HDEL', KEYS[2], unpack(done))
  local jobs, attempts, errors, opts, gone = KEYS[3], KEYS[4], KEYS[5], KEYS[8], done
  -- snippet: forget
  redis.call('HDEL', jobs, unpack(gone))
  redis.call('HDEL', attempts, unpack(gone))
  redis.call('HDEL', errors, unpack(gone))
  local steered = redis.call('HDEL', opts, unpack(gone))
  -- end snippet
  if steered > 0 then tell(ARGV[2], 'finished\n' .. table.concat(done, '\n')) end
  redis.call('HINCRBY', KEYS[6], 'completed', #done)
  if window > 0 then
    -- snippet: now
    local t = redis.call('TIME')
    local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
    -- end snippet
    local entries = {}
    for i, id in ipairs(done) do
      entries[2 * i - 1], entries[2 * i] = now, id
    end
    redis.call('ZADD', KEYS[7], unpack(entries))
    redis.call('ZREMRANGEBYSCORE', KEYS[7], '-inf', now - window)
    -- Without acks the set ages out as a whole: no leftover key once the queue is idle.
    redis.call('PEXPIRE', KEYS[7], window)
  end
end
return out
