-- bury.lua: running -> dead. The job used its last attempt, failed permanently, or could not be
-- decoded. Its envelope stays (so it can be inspected and retried); the reason is recorded.
--
-- KEYS[1]  running   ZSET  job id -> lease deadline (ms)
-- KEYS[2]  leases    HASH  job id -> fencing token of the current holder
-- KEYS[3]  dead      ZSET  job id -> time it died (ms)
-- KEYS[4]  attempts  HASH  job id -> attempts started
-- KEYS[5]  errors    HASH  job id -> last error record (JSON)
-- KEYS[6]  stats     HASH  event counters: `dead` += 1; `cancelled` += 1 for reason `cancelled`
-- KEYS[7]  opts      HASH  job id -> how it is steered: its entry goes, and when it has `cancel`
--                           or `wait` the job's end is told on the `ended` channel; when it
--                           has `undo`, the compensating job is scheduled (`compensate` snippet)
-- KEYS[8]  scheduled ZSET  job id -> due time (ms): where a compensating job goes, due now
-- KEYS[9]  jobs      HASH  job id -> envelope: the compensating job's is written here
-- KEYS[10] meta      HASH  `events` = N while the queue keeps an event log
-- KEYS[11] events    STREAM the queue's event log (see the `events` snippet); meta's `events` bounds it
-- KEYS[12] limit_held ZSET  "key TAB id" of jobs running under a concurrency limit; with the
--                           next three, touched only when meta says `limits` (see `release`)
-- KEYS[13] limit_wait ZSET  "key TAB id" of jobs deferred by a concurrency limit
-- KEYS[14] ready      LIST  where the first deferred job of a freed key goes
-- KEYS[15] bell       LIST  rung when that job goes to ready in a queue that uses priorities
--
-- ARGV[1]  job id
-- ARGV[2]  fencing token the caller holds
-- ARGV[3]  reason (e.g. "attempts_exhausted", "permanent", "undecodable")
-- ARGV[4]  error message
-- ARGV[5]  the queue's `ended` channel (see the `tell` snippet)
-- ARGV[6]  the queue's wake channel: told when a compensating job was scheduled
--
-- Returns the time of death (ms), or 0 when the caller no longer holds the lease.
local id, token, reason, message = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
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
-- snippet: now
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
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
local meta = redis.call('HMGET', KEYS[10], 'events', 'limits', 'prio')
log.max = tonumber(meta[1]) or 0
if log.max > 0 then
  record('dead', id, tonumber(redis.call('HGET', KEYS[4], id) or '0'), reason)
end
redis.call('ZREM', KEYS[1], id)
redis.call('HDEL', KEYS[2], id)
redis.call('ZADD', KEYS[3], now, id)
redis.call('HINCRBY', KEYS[6], 'dead', 1)
if reason == 'cancelled' then redis.call('HINCRBY', KEYS[6], 'cancelled', 1) end
local entry = redis.call('HGET', KEYS[7], id)
if entry and meta[2] then
  -- The job stops running: its concurrency slot goes to the next job waiting for it.
  release({held = KEYS[12], wait = KEYS[13], scheduled = KEYS[8], ready = KEYS[14],
    bell = KEYS[15], prio = meta[3]}, {id}, {entry})
end
if entry then
  -- A dead job is not run again: its expiry and marks have nothing left to act on.
  entry = cjson.decode(entry)
  redis.call('HDEL', KEYS[7], id)
  if reason == 'cancelled' and entry.cancel then
    tell(ARGV[5], 'stopped\n' .. id)
  elseif entry.cancel or entry.wait then
    tell(ARGV[5], 'dead\n' .. id)
  end
  if compensate({jobs = KEYS[9], scheduled = KEYS[8], stats = KEYS[6]}, entry, now) then
    tell(ARGV[6], tostring(now))
  end
end
-- snippet: error record
redis.call('HSET', KEYS[5], id, cjson.encode({
  reason = reason,
  message = message,
  at = now,
  attempt = tonumber(redis.call('HGET', KEYS[4], id) or '0'),
}))
-- end snippet
flush(KEYS[11], now)
return now
