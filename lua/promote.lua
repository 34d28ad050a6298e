-- promote.lua: scheduled -> ready for due jobs, and running -> ready for expired leases; a due
-- job whose time ran out goes to dead instead (or is deleted), and so does a job whose lease
-- ran out after its cancellation was asked.
--
-- KEYS[1]  scheduled  ZSET  job id -> due time (ms)
-- KEYS[2]  ready      LIST  job ids, oldest first (RPUSH here, LPOP in claim.lua)
-- KEYS[3]  running    ZSET  job id -> lease deadline (ms)
-- KEYS[4]  leases     HASH  job id -> fencing token of the current holder
-- KEYS[5]  attempts   HASH  job id -> attempts started
-- KEYS[6]  errors     HASH  job id -> last error record (JSON)
-- KEYS[7]  stats      HASH  event counters: `promoted`, `lease_expired` += jobs moved;
--                           `expired`, `dead` (see the `expire` snippet)
-- KEYS[8]  meta       HASH  `format` -> storage format, written when the queue is opened;
--                           `due` = 1 once a worker asked for due times (claim.lua);
--                           `opts` = 1 once a job has an opts entry (schedule.lua, cancel.lua);
--                           `prio` = 1 once a job was scheduled with a priority (schedule.lua),
--                           2 once ranked here,
--                           `prio_step` its aging step (ms; `Queue::set_priority_step`)
-- KEYS[9]  due        HASH  job id -> when it became due (ms), while it waits in ready: the
--                           due time of a promoted job, the lease deadline of an expired one;
--                           written only when meta says `due` (nothing is spent otherwise)
-- KEYS[10] dead       ZSET  job id -> time it died (ms)
-- KEYS[11] jobs       HASH  job id -> envelope
-- KEYS[12] opts       HASH  job id -> how it is steered (JSON: `deadline`, `drop`, `cancel`);
--                           read only when meta says `opts`
-- KEYS[13] ranked     ZSET  ready job ids by rank, instead of `ready`, once meta says `prio`:
--                           rank = when it became due - priority * step (ms; the envelope's
--                           `p`, -9..9, and meta's `prio_step`, 60000 when absent), so a
--                           higher priority goes first and a lower one waits at most `step` per
--                           level behind jobs that became due after it
-- KEYS[14] bell       LIST  one element while `ranked` may have jobs: idle workers of a queue
--                           that uses priorities block on it (claim.lua empties it); its name
--                           is pushed to `ready` once, at the queue's first ranking (`prio`
--                           1 -> 2), to wake the workers that still block there
-- KEYS[15] events     STREAM the queue's event log (see the `events` snippet); meta's `events` bounds it
--
-- ARGV[1]  batch: at most this many due jobs and at most this many expired leases per call
-- ARGV[2]  storage format, written back to meta when meta is missing
-- ARGV[3]  the queue's `ended` channel (see the `tell` snippet)
--
-- Promotion lags are counted into buckets whose upper bounds (ms, inclusive, ascending) are
-- `bounds` below, the promoter's histogram (src/metrics.rs LAG_BUCKETS_MS, which a test keeps
-- equal). They are not arguments: 15 of them, pushed and parsed every call, were a tenth of a
-- one-job call.
--
-- Returns {now, promoted, expired, next_due, next_lease, max_lag, sum_lag, lost, timed_out,
--          now_us, n_1, ..., n_16}
--   now         server time (ms) this call used
--   promoted    due jobs moved scheduled -> ready (with timed_out == batch: call again)
--   expired     leases that ended: those jobs moved running -> ready, or to dead when their
--               cancellation was asked (== batch: call again)
--   next_due    due time of the new head of scheduled, or -1 when it is empty
--   next_lease  earliest lease deadline in running, or -1 when it is empty
--   max_lag     largest promotion lag (now - due, ms) among the promoted jobs, 0 when none
--   sum_lag     sum of the promoted jobs' lags, ms
--   lost        1 when meta was missing: Redis lost the queue's data since it was opened
--               (restarted without persistence, flushed, or failed over to a stale replica);
--               meta is written again so that this is reported once
--   timed_out   due jobs whose time ran out: dead or deleted instead of promoted
--   now_us      the microseconds past `now` of the server's clock: the promoter sleeps until
--               next_due - (now + now_us / 1000), not a fraction of a ms longer
--   n_i         promoted jobs whose lag is at most bound i (and above bound i - 1); n_16
--               counts those above the last bound
-- Counting here keeps the reply a few integers however many jobs move.
-- A job is never promoted before its due time: only scores <= now are taken.
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
-- snippet: now
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
-- end snippet
-- Numbers given to redis.call are formatted with printf's "%.17g" (its slow path, a few
-- thousand instructions each): the ones every call passes go as text, made once.
local batch, now_text = ARGV[1], string.format('%d', now)

local meta = redis.call('HMGET', KEYS[8], 'format', 'due', 'opts', 'prio', 'prio_step', 'events')
log.max = tonumber(meta[6]) or 0
local record_due = meta[2]
local steered = meta[3]
local ranked = meta[4]
local step = tonumber(meta[5]) or 60000

-- A job's priority: the envelope's `p` when it is the map's first field (fixmap, the key "p",
-- a fixint: bytes 8N a1 70 XX), clamped to -9..9; 0 for any other envelope. Reading four
-- bytes keeps ranking cheap, and Redis's cmsgpack cannot decode the envelope's `bin` data.
local function priority_of(envelope)
  if not envelope then return 0 end
  local map, len, key, value = string.byte(envelope, 1, 4)
  if map and map >= 0x80 and map <= 0x8f and len == 0xa1 and key == 0x70 and value then
    if value <= 0x7f then return math.min(value, 9) end
    if value >= 0xe0 then return math.max(value - 256, -9) end
  end
  return 0
end

-- Puts `ids` (which became due at `became`, an array of id, ms pairs) in `ranked` by their
-- rank, and rings the bell.
local function rank(ids, became)
  local envelopes = redis.call('HMGET', KEYS[11], unpack(ids))
  local members = {}
  for i, id in ipairs(ids) do
    members[2 * i - 1] = tonumber(became[2 * i]) - priority_of(envelopes[i]) * step
    members[2 * i] = id
  end
  redis.call('ZADD', KEYS[13], unpack(members))
  if redis.call('EXISTS', KEYS[14]) == 0 then redis.call('RPUSH', KEYS[14], '1') end
  if ranked == '1' then
    -- The queue's first ranked jobs: idle workers still block on `ready`, which nothing fills
    -- from now on. One marker there (the bell's name: no job has it, so claim.lua drops it)
    -- wakes them, and their claim tells them to wait on the bell. It stays the list's last
    -- element until taken, where `stats` finds and skips it.
    redis.call('RPUSH', KEYS[2], KEYS[14])
    redis.call('HSET', KEYS[8], 'prio', '2')
    ranked = '2'
  end
end
-- No wake channel: a compensating job is due now, which this call's reply (next_due) says.
local k = {dead = KEYS[10], jobs = KEYS[11], attempts = KEYS[5], errors = KEYS[6], opts = KEYS[12],
  stats = KEYS[7], ended = ARGV[3], scheduled = KEYS[1]}
local lost = 0
if not meta[1] then
  redis.call('HSET', KEYS[8], 'format', ARGV[2])
  lost = 1
end

local bounds = {1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 30000, 60000}
local counts = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}

-- The due jobs, oldest first, as id, due time pairs. Redis 7.0 turns each score into text with
-- printf's "%.17g" and Lua parses it back, which was two fifths of promoting a big batch. So the
-- first two due jobs are read with their scores; when they share a due time (a burst:
-- reminders at 09:00, a backlog), every job due at that instant comes as an id only and shares
-- its text, and only the jobs after them come with their scores. Otherwise one call reads the
-- batch as before (one due job: the first read was the batch).
local size = tonumber(batch)
local due = redis.call('ZRANGE', KEYS[1], '-inf', now_text, 'BYSCORE', 'LIMIT', '0',
  size < 2 and batch or '2', 'WITHSCORES')
local oldest = due[2]
if due[4] == oldest and oldest then
  due = {}
  local first = redis.call('ZRANGE', KEYS[1], oldest, oldest, 'BYSCORE', 'LIMIT', '0', batch)
  for i, id in ipairs(first) do due[2 * i - 1], due[2 * i] = id, oldest end
  local more = size - #first
  if more > 0 then
    local rest = redis.call('ZRANGE', KEYS[1], '(' .. oldest, now_text, 'BYSCORE', 'LIMIT', '0',
      string.format('%d', more), 'WITHSCORES')
    local at = #due
    for i = 1, #rest do due[at + i] = rest[i] end
  end
elseif due[4] and size > 2 then
  due = redis.call('ZRANGE', KEYS[1], '-inf', now_text, 'BYSCORE', 'LIMIT', '0', batch,
    'WITHSCORES')
end
-- Jobs whose time ran out are taken out of `due` (only when some job has options).
local taken = #due / 2
if steered and #due > 0 then
  local all = {}
  for i = 1, #due, 2 do all[#all + 1] = due[i] end
  local entries = redis.call('HMGET', KEYS[12], unpack(all))
  local keep, gone, gone_entries, reasons = {}, {}, {}, {}
  for i, id in ipairs(all) do
    local entry = entries[i] and cjson.decode(entries[i])
    if entry and entry.deadline and entry.deadline < now then
      gone[#gone + 1] = id
      gone_entries[#gone_entries + 1] = entry
      reasons[#reasons + 1] = 'expired'
    else
      keep[#keep + 1] = id
      keep[#keep + 1] = due[2 * i]
    end
  end
  if #gone > 0 then
    redis.call('ZREM', KEYS[1], unpack(gone))
    expire(k, gone, gone_entries, reasons, now)
    due = keep
  end
end
-- `due` alternates id, score: exactly the field/value pairs HSET wants for KEYS[9].
local ids = {}
local max_lag, sum_lag = 0, 0
-- Jobs come oldest first, so lags only fall: the bucket index only moves down.
local bucket = #bounds + 1
-- A due time's text is parsed once for all the jobs in a row that share it.
local text, lag = nil, 0
for i = 1, #due, 2 do
  ids[#ids + 1] = due[i]
  if due[i + 1] ~= text then
    text = due[i + 1]
    lag = now - tonumber(text)
  end
  if lag > max_lag then max_lag = lag end
  sum_lag = sum_lag + lag
  while bucket > 1 and lag <= bounds[bucket - 1] do bucket = bucket - 1 end
  counts[bucket] = counts[bucket] + 1
end
if #ids > 0 then
  redis.call('ZREM', KEYS[1], unpack(ids))
  if ranked then rank(ids, due) else redis.call('RPUSH', KEYS[2], unpack(ids)) end
  if log.max > 0 then
    for _, id in ipairs(ids) do record('promoted', id) end
  end
  if record_due then redis.call('HSET', KEYS[9], unpack(due)) end
  redis.call('HINCRBY', KEYS[7], 'promoted', string.format('%d', #ids))
end

local leases = redis.call('ZRANGE', KEYS[3], '-inf', now_text, 'BYSCORE', 'LIMIT', '0', batch,
  'WITHSCORES')
local ended = #leases / 2
local expired = {}
for i = 1, #leases, 2 do expired[#expired + 1] = leases[i] end
if steered and #expired > 0 then
  -- A job whose cancellation was asked does not run again: dead, reason `cancelled`.
  local entries = redis.call('HMGET', KEYS[12], unpack(expired))
  local keep, back, gone, gone_entries, reasons = {}, {}, {}, {}, {}
  for i, id in ipairs(expired) do
    local entry = entries[i] and cjson.decode(entries[i])
    if entry and entry.cancel then
      gone[#gone + 1] = id
      gone_entries[#gone_entries + 1] = entry
      reasons[#reasons + 1] = 'cancelled'
    else
      keep[#keep + 1] = id
      back[#back + 1] = id
      back[#back + 1] = leases[2 * i]
    end
  end
  if #gone > 0 then
    redis.call('ZREM', KEYS[3], unpack(gone))
    redis.call('HDEL', KEYS[4], unpack(gone))
    expire(k, gone, gone_entries, reasons, now)
    expired, leases = keep, back
  end
end
if #expired > 0 then
  redis.call('ZREM', KEYS[3], unpack(expired))
  redis.call('HDEL', KEYS[4], unpack(expired))
  for _, id in ipairs(expired) do
    local attempt = tonumber(redis.call('HGET', KEYS[5], id) or '0')
    record('lease_expired', id, attempt)
    redis.call('HSET', KEYS[6], id, cjson.encode({
      reason = 'lease_expired',
      message = 'the worker holding the job stopped renewing its lease (crashed, stalled or cut off)',
      at = now,
      attempt = attempt,
    }))
  end
  if ranked then rank(expired, leases) else redis.call('RPUSH', KEYS[2], unpack(expired)) end
  if record_due then redis.call('HSET', KEYS[9], unpack(leases)) end
  redis.call('HINCRBY', KEYS[7], 'lease_expired', #expired)
end

flush(KEYS[15], now)
local head = redis.call('ZRANGE', KEYS[1], '0', '0', 'WITHSCORES')
local lease = redis.call('ZRANGE', KEYS[3], '0', '0', 'WITHSCORES')
local out = {
  now,
  #ids,
  ended,
  head[2] and tonumber(head[2]) or -1,
  lease[2] and tonumber(lease[2]) or -1,
  max_lag,
  sum_lag,
  lost,
  taken - #ids,
  tonumber(t[2]) % 1000,
}
for i = 1, #counts do out[10 + i] = counts[i] end
return out
