-- retry.lua: running -> scheduled. A failed attempt waits out its backoff, or a snoozed or
-- handed-back job waits without using an attempt.
--
-- KEYS[1]  running    ZSET  job id -> lease deadline (ms)
-- KEYS[2]  leases     HASH  job id -> fencing token of the current holder
-- KEYS[3]  scheduled  ZSET  job id -> due time (ms)
-- KEYS[4]  attempts   HASH  job id -> attempts started
-- KEYS[5]  errors     HASH  job id -> last error record (JSON)
-- KEYS[6]  stats      HASH  event counters: `retried` += 1 when the attempt counts; `expired`,
--                            `dead` (see the `expire` snippet)
-- KEYS[7]  dead       ZSET  job id -> time it died (ms)
-- KEYS[8]  jobs       HASH  job id -> envelope
-- KEYS[9]  opts       HASH  job id -> how it is steered (JSON: `deadline`, `drop`, `cancel`)
-- KEYS[10] meta       HASH  `events` = N while the queue keeps an event log
-- KEYS[11] events     STREAM the queue's event log (see the `events` snippet); meta's `events` bounds it
-- KEYS[12] limit_held ZSET  "key TAB id" of jobs running under a concurrency limit; with the
--                           next three, touched only when meta says `limits` (see `release`)
-- KEYS[13] limit_wait ZSET  "key TAB id" of jobs deferred by a concurrency limit
-- KEYS[14] ready      LIST  where the first deferred job of a freed key goes
-- KEYS[15] bell       LIST  rung when that job goes to ready in a queue that uses priorities
--
-- ARGV[1]  wake channel, woken (see the `wake` snippet) when the job becomes the head of scheduled
-- ARGV[2]  job id
-- ARGV[3]  fencing token the caller holds
-- ARGV[4]  delay in ms: the job is due at server now + delay
-- ARGV[5]  "1": the attempt counts (a failure); "0": it does not (snooze, hand-back)
-- ARGV[6]  error reason ("" for none: the last error record is left as it is)
-- ARGV[7]  error message
-- ARGV[8]  the queue's `ended` channel (see the `tell` snippet)
--
-- Returns the new due time (ms); -1 when the job ended instead: its cancellation was asked
-- (dead, reason `cancelled`) or the new due time lies past its expiry (dead, reason `expired`,
-- or deleted); 0 when the caller no longer holds the lease.
local id, token, reason, message = ARGV[2], ARGV[3], ARGV[6], ARGV[7]
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
-- snippet: compensate
-- Schedules, due now, the compensating job that a dying job's opts entry names (`undo`: its
-- `id` and its envelope `e`, in hex; NewJob::compensate_with) in this partition (`k.jobs`,
-- `k.scheduled`), unless that id is taken; counts `compensated`. True when it was scheduled.
local function compensate(k, entry, now)
  local undo = entry and entry.undo
  if type(undo) ~= 'table' or type(undo.id) ~= 'string' or type(undo.e) ~= 'string' then
    return false
  end
  local envelope = string.gsub(undo.e, '%x%x', function(h) return string.char(tonumber(h, 16)) end)
  if redis.call('HSETNX', k.jobs, undo.id, envelope) == 0 then return false end
  redis.call('ZADD', k.scheduled, now, undo.id)
  redis.call('HINCRBY', k.stats, 'compensated', 1)
  record('compensated', undo.id)
  return true
end
-- end snippet
-- snippet: expire
-- Ends jobs that must not run: `gone` lists ids already taken out of the state they were in,
-- `entries` their decoded opts entries, `reasons` 'expired' or 'cancelled' for each. An
-- expired job whose options say drop is deleted; every other goes to the dead set with its
-- reason, and one that had run has its compensating job scheduled (see the `compensate`
-- snippet; the promoter is woken on `k.wake` when given). Counts `expired` or `cancelled` for
-- each, and `dead` for those kept; a cancelled job's end is told (see the `tell` snippet) on
-- `k.ended`. `k` names the keys and channels.
local function expire(k, gone, entries, reasons, now)
  local kept, expired, compensated = {}, 0, false
  for i, id in ipairs(gone) do
    local entry, reason = entries[i], reasons[i]
    if reason == 'expired' then expired = expired + 1 end
    record(reason, id, nil, (reason == 'expired' and entry.drop and 'dropped')
      or (reason == 'cancelled' and 'stopped') or nil)
    if reason == 'expired' and entry.drop then
      redis.call('HDEL', k.jobs, id)
      redis.call('HDEL', k.attempts, id)
      redis.call('HDEL', k.errors, id)
    else
      local message = 'cancelled while it ran'
      if reason == 'expired' then
        message = 'not run: its time ran out at ' .. tostring(entry.deadline) .. ' (unix ms)'
      end
      kept[#kept + 1] = now
      kept[#kept + 1] = id
      local attempt = tonumber(redis.call('HGET', k.attempts, id) or '0')
      redis.call('HSET', k.errors, id, cjson.encode({
        reason = reason,
        message = message,
        at = now,
        attempt = attempt,
      }))
      if attempt > 0 and compensate(k, entry, now) then compensated = true end
    end
    redis.call('HDEL', k.opts, id)
    if reason == 'cancelled' then
      tell(k.ended, 'stopped\n' .. id)
    elseif entry.wait then
      tell(k.ended, 'expired\n' .. id)
    end
  end
  if #kept > 0 then
    redis.call('ZADD', k.dead, unpack(kept))
    redis.call('HINCRBY', k.stats, 'dead', #kept / 2)
  end
  if expired > 0 then redis.call('HINCRBY', k.stats, 'expired', expired) end
  if expired < #gone then redis.call('HINCRBY', k.stats, 'cancelled', #gone - expired) end
  if compensated and k.wake then tell(k.wake, tostring(now)) end
end
-- end snippet
-- snippet: release
-- Frees the concurrency slots of jobs that stopped running (`ids`, with their opts
-- `entries`): each one's "key TAB id" leaves limit_held, and the first job deferred on that
-- key (limit_wait, in id order) leaves `scheduled` for `ready` at once, where claim.lua
-- checks it against the limit again (a queue that uses priorities has its bell rung). Entries
-- of deferred jobs that are no longer scheduled are dropped on the way.
local function release(k, ids, entries)
  for i, id in ipairs(ids) do
    local entry = entries[i] and cjson.decode(entries[i])
    if entry and entry.lk and redis.call('ZREM', k.held, entry.lk .. '\t' .. id) == 1 then
      local from, to = '[' .. entry.lk .. '\t', '[' .. entry.lk .. '\t\255'
      for _ = 1, 10 do
        local first = redis.call('ZRANGE', k.wait, from, to, 'BYLEX', 'LIMIT', 0, 1)[1]
        if not first then break end
        redis.call('ZREM', k.wait, first)
        local waiting = string.sub(first, #entry.lk + 2)
        if redis.call('ZREM', k.scheduled, waiting) == 1 then
          redis.call('RPUSH', k.ready, waiting)
          if k.prio and redis.call('EXISTS', k.bell) == 0 then redis.call('RPUSH', k.bell, '1') end
          break
        end
      end
    end
  end
end
-- end snippet

local due = now + tonumber(ARGV[4])
local meta = redis.call('HMGET', KEYS[10], 'events', 'limits', 'prio')
log.max = tonumber(meta[1]) or 0
local entry = redis.call('HGET', KEYS[9], id)
if entry and meta[2] then
  -- The job stops running: its concurrency slot goes to the next job waiting for it.
  release({held = KEYS[12], wait = KEYS[13], scheduled = KEYS[3], ready = KEYS[14],
    bell = KEYS[15], prio = meta[3]}, {id}, {entry})
end
if entry then
  entry = cjson.decode(entry)
  local ended = nil
  if entry.cancel then
    ended = 'cancelled'
  elseif entry.deadline and due > entry.deadline then
    ended = 'expired'
  end
  if ended then
    redis.call('ZREM', KEYS[1], id)
    redis.call('HDEL', KEYS[2], id)
    expire({dead = KEYS[7], jobs = KEYS[8], attempts = KEYS[4], errors = KEYS[5], opts = KEYS[9],
      stats = KEYS[6], ended = ARGV[8], scheduled = KEYS[3], wake = ARGV[1]}, {id}, {entry},
      {ended}, now)
    flush(KEYS[11], now)
    return -1
  end
end

redis.call('ZREM', KEYS[1], id)
redis.call('HDEL', KEYS[2], id)
if ARGV[5] == '0' then
  redis.call('HINCRBY', KEYS[4], id, -1)
  record('snoozed', id)
else
  redis.call('HINCRBY', KEYS[6], 'retried', 1)
  if log.max > 0 then
    record('retried', id, tonumber(redis.call('HGET', KEYS[4], id) or '0'), reason)
  end
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

local scheduled = KEYS[3]
-- snippet: schedule and wake
local head = redis.call('ZRANGE', scheduled, 0, 0, 'WITHSCORES')
redis.call('ZADD', scheduled, due, id)
if head[2] == nil or due < tonumber(head[2]) then
  wake(due, false)
end
-- end snippet
flush(KEYS[11], now)
return due
