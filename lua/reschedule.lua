-- reschedule.lua: scheduled | ready | dead | completed -> scheduled at a new time. A dead or
-- completed job comes back
-- with its attempts reset (its last error is kept for the record) and its opts entry dropped. A
-- running job is refused. A `max_lateness` moves with the due time.
--
-- KEYS[1]  scheduled  ZSET  job id -> due time (ms)
-- KEYS[2]  ready      LIST  job ids
-- KEYS[3]  running    ZSET  job id -> lease deadline (ms)
-- KEYS[4]  dead       ZSET  job id -> time it died (ms)
-- KEYS[5]  jobs       HASH  job id -> envelope
-- KEYS[6]  attempts   HASH  job id -> attempts started
-- KEYS[7]  due        HASH  job id -> when it became due (ms), while ready
-- KEYS[8]  opts       HASH  job id -> how it is steered (JSON: `deadline`, `expires_at`,
--                            `max_lateness`, ...)
-- KEYS[9]  completed  ZSET  job id -> time it completed (ms), while kept
-- KEYS[10] results    HASH  job id -> its completion record, while kept
-- KEYS[11] ranked     ZSET  ready job ids of a queue that uses priorities, by rank
-- KEYS[12] meta       HASH  `events` = N while the queue keeps an event log
-- KEYS[13] events     STREAM the queue's event log (see the `events` snippet); meta's `events` bounds it
--
-- ARGV[1]  wake channel, woken (see the `wake` snippet) when the job becomes the head of scheduled
-- ARGV[2]  job id
-- ARGV[3]  mode: "in" (due = server now + 1 + ms, or now for 0 ms) or "at" (due = ms)
-- ARGV[4]  ms
-- ARGV[5]  past tolerance in ms for "at"; -1 accepts any time in the past
--
-- Returns {state, value}:
--   {"scheduled" | "ready" | "dead" | "completed", due}  moved from that state; now due at `due`
--   {"running", 0}                         refused, nothing changed
--   {"unknown", 0}                         no such job
--   {"past", now}                          "at" is too far in the past, nothing changed
local id = ARGV[2]
if redis.call('HEXISTS', KEYS[5], id) == 0 then return {'unknown', 0} end
if redis.call('ZSCORE', KEYS[3], id) then return {'running', 0} end

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
local due = tonumber(ARGV[4])
if ARGV[3] == 'in' and due > 0 then
  -- now + 1: the server's clock in whole ms, rounded up (never due before the instant
  -- asked for).
  due = now + 1 + due
elseif ARGV[3] == 'in' then
  due = now
elseif tonumber(ARGV[5]) >= 0 and due < now - tonumber(ARGV[5]) then
  return {'past', now}
end

local state = 'ready'
if redis.call('ZSCORE', KEYS[1], id) then
  state = 'scheduled'
elseif redis.call('ZREM', KEYS[4], id) == 1 then
  state = 'dead'
  redis.call('HDEL', KEYS[6], id)
  redis.call('HDEL', KEYS[8], id)
elseif redis.call('ZREM', KEYS[9], id) == 1 then
  state = 'completed'
  redis.call('HDEL', KEYS[10], id)
  redis.call('HDEL', KEYS[6], id)
  redis.call('HDEL', KEYS[8], id)
elseif redis.call('ZREM', KEYS[11], id) == 0 then
  redis.call('LREM', KEYS[2], 1, id)
  redis.call('HDEL', KEYS[7], id)
else
  redis.call('HDEL', KEYS[7], id)
end

if state ~= 'dead' and state ~= 'completed' then
  local entry = redis.call('HGET', KEYS[8], id)
  entry = entry and cjson.decode(entry)
  if entry and entry.max_lateness then
    entry.deadline = due + entry.max_lateness
    if entry.expires_at and entry.expires_at < entry.deadline then entry.deadline = entry.expires_at end
    redis.call('HSET', KEYS[8], id, cjson.encode(entry))
  end
end

local scheduled = KEYS[1]
-- snippet: schedule and wake
local head = redis.call('ZRANGE', scheduled, 0, 0, 'WITHSCORES')
redis.call('ZADD', scheduled, due, id)
if head[2] == nil or due < tonumber(head[2]) then
  wake(due, false)
end
-- end snippet
log.max = tonumber(redis.call('HGET', KEYS[12], 'events')) or 0
record('rescheduled', id, nil, state)
flush(KEYS[13], now)
return {state, due}
