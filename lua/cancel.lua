-- cancel.lua: scheduled | ready | dead -> gone. A running job is not removed (its worker holds
-- it): its cancellation is asked instead, in its opts entry (`cancel` = when); its worker sees
-- it at its next lease extension (extend.lua), stops the handler and moves the job to dead
-- with reason `cancelled` (retry.lua and promote.lua do the same for a job of a worker that
-- did not).
--
-- KEYS[1]  scheduled  ZSET  job id -> due time (ms)
-- KEYS[2]  ready      LIST  job ids
-- KEYS[3]  running    ZSET  job id -> lease deadline (ms)
-- KEYS[4]  dead       ZSET  job id -> time it died (ms)
-- KEYS[5]  jobs       HASH  job id -> envelope
-- KEYS[6]  attempts   HASH  job id -> attempts started
-- KEYS[7]  errors     HASH  job id -> last error record
-- KEYS[8]  stats      HASH  event counters: `cancelled` += 1 (for a running job: when it ends
--                            cancelled, in bury.lua, retry.lua or promote.lua)
-- KEYS[9]  due        HASH  job id -> when it became due (ms), while ready
-- KEYS[10] opts       HASH  job id -> how it is steered (JSON)
-- KEYS[11] meta       HASH  `opts` = 1 once a job has an opts entry
-- KEYS[12] completed  ZSET  job id -> time it completed (ms), while kept
-- KEYS[13] results    HASH  job id -> its completion record, while kept
-- KEYS[14] ranked     ZSET  ready job ids of a queue that uses priorities, by rank
-- KEYS[15] events     STREAM the queue's event log (see the `events` snippet); meta's `events` bounds it
--
-- ARGV[1]  job id
-- ARGV[2]  the queue's `ended` channel: told "cancelled" when the job had an opts entry (someone
--          may wait for it; see the `tell` snippet)
--
-- Returns the state the job was in: "scheduled", "ready", "dead" or "completed" (it is now gone),
-- "running" (its cancellation is asked; `cancelled` is counted when it ends) or "unknown"
-- (no such job).
-- Cost: O(log N) for scheduled and dead jobs; a ready job is found with LREM, O(length of ready),
-- which stays short while workers keep up.
-- snippet: events
-- The queue's event log. While `meta` says `events` = N (the script sets `log.max` to N),
-- every change the call makes is recorded as one line, "event TAB id TAB attempt TAB reason"
-- (attempt and reason may be empty), and `flush` writes the call's lines in ONE XADD to the
-- `events` stream (fields `t`: server ms, `now` or read here, `e`: the lines), trimmed to
-- about N entries. With `log.max` 0 nothing is collected or written.
local log = {max = 0, lines = {}}
local function record(event, id, attempt, reason)
  if log.max > 0 then
    log.lines[#log.lines + 1] = event .. '\t' .. id .. '\t' .. (attempt and tostring(attempt) or '')
      .. '\t' .. (reason or '')
  end
end
local function flush(key, now)
  if #log.lines > 0 then
    if not now then
      local t = redis.call('TIME')
      now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
    end
    redis.call('XADD', key, 'MAXLEN', '~', log.max, '*', 't', now, 'e', table.concat(log.lines, '\n'))
    log.lines = {}
  end
end
-- end snippet
-- snippet: tell
-- Tells whoever waits on the queue's `ended` channel (`channel`: `Queue::wait`, or a
-- `Queue::cancel_and_wait` caller) how jobs with a waiter or an asked cancellation (their opts
-- entry says so) ended: `message` is one word, "completed", "dead", "expired", "cancelled" or
-- "stopped" (cancelled while it ran), then each id, one per line (ids hold no control
-- characters). A sharded SPUBLISH on a cluster, a classic PUBLISH on one server.
local function tell(channel, message)
  if string.find(redis.call('INFO', 'cluster'), 'cluster_enabled:1', 1, true) then
    redis.call('SPUBLISH', channel, message)
  else
    redis.call('PUBLISH', channel, message)
  end
end
-- end snippet
local id = ARGV[1]
if redis.call('HEXISTS', KEYS[5], id) == 0 then return 'unknown' end
log.max = tonumber(redis.call('HGET', KEYS[11], 'events')) or 0
if redis.call('ZSCORE', KEYS[3], id) then
  local entry = redis.call('HGET', KEYS[10], id)
  entry = entry and cjson.decode(entry) or {}
  if not entry.cancel then
    -- snippet: now
    local t = redis.call('TIME')
    local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
    -- end snippet
    entry.cancel = now
    redis.call('HSET', KEYS[10], id, cjson.encode(entry))
    redis.call('HSET', KEYS[11], 'opts', '1')
    record('cancel_requested', id)
    flush(KEYS[15], now)
  end
  return 'running'
end

local state = 'unknown'
if redis.call('ZREM', KEYS[1], id) == 1 then
  state = 'scheduled'
elseif redis.call('ZREM', KEYS[4], id) == 1 then
  state = 'dead'
elseif redis.call('ZREM', KEYS[12], id) == 1 then
  state = 'completed'
  redis.call('HDEL', KEYS[13], id)
elseif redis.call('ZREM', KEYS[14], id) == 1 or redis.call('LREM', KEYS[2], 1, id) == 1 then
  state = 'ready'
  redis.call('HDEL', KEYS[9], id)
end
local jobs, attempts, errors, opts, gone = KEYS[5], KEYS[6], KEYS[7], KEYS[10], {id}
-- snippet: forget
redis.call('HDEL', jobs, unpack(gone))
redis.call('HDEL', attempts, unpack(gone))
redis.call('HDEL', errors, unpack(gone))
local steered = redis.call('HDEL', opts, unpack(gone))
-- end snippet
if steered > 0 then tell(ARGV[2], 'cancelled\n' .. id) end
redis.call('HINCRBY', KEYS[8], 'cancelled', 1)
record('cancelled', id, nil, state)
flush(KEYS[15])
return state
