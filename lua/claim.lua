-- claim.lua: ready -> running, under a lease with a fresh fencing token; a job whose time ran
-- out while it waited in ready goes to dead instead (or is deleted).
--
-- KEYS[1]  ready     LIST  job ids, oldest first
-- KEYS[2]  running   ZSET  job id -> lease deadline (ms)
-- KEYS[3]  jobs      HASH  job id -> envelope
-- KEYS[4]  attempts  HASH  job id -> attempts started
-- KEYS[5]  leases    HASH  job id -> fencing token of the current holder
-- KEYS[6]  seq       STRING counter that mints fencing tokens, one per claim call
-- KEYS[7]  due       HASH  job id -> when it became due (ms), written by promote.lua
-- KEYS[8]  meta      HASH  `due` = 1: promote.lua records due times (set here on request);
--                           `paused` = 1: the queue is paused (pause.lua), nothing is claimed;
--                           `opts` = 1: some job has an opts entry (schedule.lua);
--                           `keep_completed` = "AGE_MS,COUNT": the completed-job retention;
--                           `prio` = 1: the queue uses priorities (its ready jobs are in ranked);
--                           `limits` = 1: the queue has limit rules (src/limits.rs)
-- KEYS[9]  dead      ZSET  job id -> time it died (ms)
-- KEYS[10] errors    HASH  job id -> last error record
-- KEYS[11] opts      HASH  job id -> how it is steered (JSON); read only when meta says `opts`
-- KEYS[12] stats     HASH  event counters: `expired`, `dead` (see the `expire` snippet)
-- KEYS[13] ranked    ZSET  ready job ids by rank (promote.lua), once meta says `prio`: taken
--                          lowest rank first, after whatever is in `ready`
-- KEYS[14] bell      LIST  the doorbell of `ranked` (promote.lua rings it): emptied here once
--                          `ranked` is empty, so idle workers block until it fills again
-- KEYS[15] scheduled ZSET  job id -> due time (ms): where a compensating job goes
-- KEYS[16] events    STREAM the queue's event log (see the `events` snippet); meta's `events` bounds it
-- KEYS[17] limits    HASH  limit key or `prefix:*` or `*` -> "RATE,PER_MS,CONCURRENCY" (empty: none);
--                          read, with the next four, only when meta says `limits` and a claimed
--                          job's opts entry has a limit key `lk`
-- KEYS[18] limit_tat   HASH  limit key -> the earliest its rate lets the next job start (ms)
-- KEYS[19] limit_held  ZSET  "key TAB id" of jobs running under a concurrency limit
-- KEYS[20] limit_wait  ZSET  "key TAB id" of jobs deferred by a concurrency limit (ack.lua
--                            makes the first of a key ready when one of the key's jobs ends)
-- KEYS[21] limit_stats HASH  limit key -> jobs deferred, in all
--
-- ARGV[1]  the most jobs to claim (at most a few thousand: ids are unpacked onto Lua's stack)
-- ARGV[2]  lease length in ms
-- ARGV[3]  "1": this worker wants due times (recorded from now on); "0": it does not ask
-- ARGV[4]  wake channel: told when a compensating job was scheduled (see the `expire` snippet)
--
-- Returns {deadline, keep, ranked, id_1, token_1, attempt_1, envelope_1, due_1, id_2, ...}; just
-- {deadline, keep, ranked} when nothing was ready; {0} when the queue is paused (nothing
-- claimed). ranked is 1 when the queue uses priorities: an idle worker then waits on `bell`.
-- keep is the queue's completed-job retention ("" for none), for the worker's ack.lua calls. attempt counts this claim (the first run is attempt 1); due is when
-- the job became due (ms, as a string), or nil when due times are not recorded (no worker of
-- the queue asked for them) or the id was put in ready by other means.
--
-- Every write takes the whole batch in one command, so a call costs a fixed handful of
-- commands however many jobs it claims.
--
-- Limits: a job with a limit key whose rule does not let it start now goes back to
-- `scheduled`, due when the rule allows (rate: the GCRA time; concurrency: the earliest lease
-- deadline of the key's running jobs, or sooner when ack.lua frees a slot), with no attempt
-- used; its opts entry says why (`limited`, `limited_until`), `stats` counts it (`deferred`)
-- and `limit_stats` per key. Other jobs of the call are claimed as usual.
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
-- snippet: now
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
-- end snippet
local deadline = now + tonumber(ARGV[2])
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

local flags = redis.call('HMGET', KEYS[8], 'due', 'paused', 'opts', 'keep_completed', 'prio',
  'events', 'limits')
if flags[2] then return {0} end
log.max = tonumber(flags[6]) or 0
local record_due = flags[1]
if not record_due and ARGV[3] == '1' then
  redis.call('HSET', KEYS[8], 'due', '1')
  record_due = '1'
end

local out = {deadline, flags[4] or '', flags[5] and 1 or 0}
local want = tonumber(ARGV[1])
-- ARGV[1] as given: a number would be formatted by printf (see the token below).
local popped = redis.call('LPOP', KEYS[1], ARGV[1]) or {}
if flags[5] and #popped < want then
  -- Ranked jobs after any left in `ready` from before the queue used priorities.
  local best = redis.call('ZPOPMIN', KEYS[13], want - #popped)
  for i = 1, #best, 2 do popped[#popped + 1] = best[i] end
  if redis.call('ZCARD', KEYS[13]) == 0 then redis.call('DEL', KEYS[14]) end
end
if #popped == 0 then return out end
local envelopes = redis.call('HMGET', KEYS[3], unpack(popped))
local dues = {}
if record_due then
  dues = redis.call('HMGET', KEYS[7], unpack(popped))
  redis.call('HDEL', KEYS[7], unpack(popped))
end
-- Every id in ready has its envelope (cancel.lua removes both together); the check keeps a
-- hand-edited or foreign entry from becoming a running job with no data.
local entries = {}
if flags[3] then entries = redis.call('HMGET', KEYS[11], unpack(popped)) end
-- Whether job `id` with limit key `key` may start now; if not, when it may (ms) and why.
-- Starting it takes its rate token and, under a concurrency limit, its place in limit_held.
local starting = {}
local function limited(key, id, entry)
  local names, pos = {key}, #key
  while pos > 1 do
    pos = pos - 1
    if string.sub(key, pos, pos) == ':' then names[#names + 1] = string.sub(key, 1, pos) .. '*' end
  end
  names[#names + 1] = '*'
  local rule = nil
  for _, r in ipairs(redis.call('HMGET', KEYS[17], unpack(names))) do
    if r then rule = r break end
  end
  if not rule then return nil end
  local n, per, c = string.match(rule, '^(%d*),(%d*),(%d*)$')
  n, per, c = tonumber(n), tonumber(per), tonumber(c)
  local held = key .. '\t' .. id
  if c then
    -- Running holders of the key; entries of jobs that stopped running (failed, died, lease
    -- expired) are dropped here, so the count never drifts.
    local live, first_end = 0, nil
    for _, h in ipairs(redis.call('ZRANGE', KEYS[19], '[' .. key .. '\t', '[' .. key .. '\t\255',
        'BYLEX')) do
      local hid = string.sub(h, #key + 2)
      local lease = starting[hid] and deadline or tonumber(redis.call('ZSCORE', KEYS[2], hid))
      if lease then
        live = live + 1
        if first_end == nil or lease < first_end then first_end = lease end
      else
        redis.call('ZREM', KEYS[19], h)
      end
    end
    if live >= c then
      redis.call('ZADD', KEYS[20], 0, held)
      return math.max(first_end or now, now + 1), 'concurrency'
    end
  end
  local reserved = entry.limited == 'rate' and entry.limited_until and entry.limited_until <= now
  if n and per and n > 0 and per > 0 and not reserved then
    -- GCRA without burst: starts at least per/n ms apart, so never more than n in any window
    -- of `per` ms; one time per key, the next free slot. A job that cannot start now takes
    -- the next slot (its reservation, kept in its opts entry), so it is deferred once.
    local slot = math.max(tonumber(redis.call('HGET', KEYS[18], key)) or now, now)
    redis.call('HSET', KEYS[18], key, tostring(slot + per / n))
    if slot > now then return math.ceil(slot), 'rate' end
  end
  if c then
    redis.call('ZADD', KEYS[19], 0, held)
    redis.call('ZREM', KEYS[20], held)
    starting[id] = true
  end
  return nil
end

local gone, gone_entries, reasons = {}, {}, {}
-- The jobs to start, counted in `n` (appending with `#t + 1` costs a search per job).
local ids, data, due, n = {}, {}, {}, 0
local deferred, deferred_at = {}, nil
for i, id in ipairs(popped) do
  local entry = entries[i] and cjson.decode(entries[i])
  local until_ms, why = nil, nil
  if entry and entry.deadline and entry.deadline < now then
    gone[#gone + 1] = id
    gone_entries[#gone_entries + 1] = entry
    reasons[#reasons + 1] = 'expired'
  elseif envelopes[i] then
    if flags[7] and entry and entry.lk then until_ms, why = limited(entry.lk, id, entry) end
    if until_ms then
      deferred[#deferred + 1] = until_ms
      deferred[#deferred + 1] = id
      if deferred_at == nil or until_ms < deferred_at then deferred_at = until_ms end
      entry.limited, entry.limited_until = why, until_ms
      redis.call('HSET', KEYS[11], id, cjson.encode(entry))
      redis.call('HINCRBY', KEYS[21], entry.lk, 1)
      if log.max > 0 then record('deferred', id, nil, why) end
    else
      if entry and entry.limited then
        -- Starting: the deferral (and any rate reservation) is used up.
        entry.limited, entry.limited_until = nil, nil
        redis.call('HSET', KEYS[11], id, cjson.encode(entry))
      end
      n = n + 1
      ids[n], data[n], due[n] = id, envelopes[i], dues[i] or false
    end
  end
end
if #deferred > 0 then
  -- Back to waiting, due when the limit allows; the promoter hears the earliest time.
  redis.call('ZADD', KEYS[15], unpack(deferred))
  redis.call('HINCRBY', KEYS[12], 'deferred', #deferred / 2)
  tell(ARGV[4], tostring(deferred_at))
end
if #gone > 0 then
  expire({dead = KEYS[9], jobs = KEYS[3], attempts = KEYS[4], errors = KEYS[10], opts = KEYS[11],
    stats = KEYS[12], scheduled = KEYS[15], wake = ARGV[4]}, gone, gone_entries, reasons, now)
end
if n == 0 then
  flush(KEYS[16], now)
  return out
end

-- One token for the whole call: a lease is the pair (job id, token), and every claim call has a
-- token of its own, so no later holder of any of these jobs can hold it. Numbers are turned
-- into text once per call, not once per job (a number passed to redis.call is formatted with
-- printf, which was a tenth of the claim's cost): the deadline, the token, and each distinct
-- attempt number (nearly always just 1).
local token = redis.call('INCR', KEYS[6])
local token_text, deadline_text = string.format('%d', token), string.format('%d', deadline)
local started = redis.call('HMGET', KEYS[4], unpack(ids))
local running, leases, attempts = {}, {}, {}
local texts, o = {}, #out
for i, id in ipairs(ids) do
  local attempt, text = 1, '1'
  if started[i] then
    attempt = tonumber(started[i]) + 1
    text = texts[attempt]
    if not text then
      text = string.format('%d', attempt)
      texts[attempt] = text
    end
  end
  running[2 * i - 1], running[2 * i] = deadline_text, id
  leases[2 * i - 1], leases[2 * i] = id, token_text
  attempts[2 * i - 1], attempts[2 * i] = id, text
  out[o + 1], out[o + 2], out[o + 3], out[o + 4], out[o + 5] = id, token, attempt, data[i], due[i]
  o = o + 5
  if log.max > 0 then record('claimed', id, attempt) end
end
redis.call('ZADD', KEYS[2], unpack(running))
redis.call('HSET', KEYS[5], unpack(leases))
redis.call('HSET', KEYS[4], unpack(attempts))
flush(KEYS[16], now)
return out
