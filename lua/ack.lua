-- ack.lua: running -> gone, or running -> completed when the queue keeps completed jobs. The
-- jobs succeeded.
--
-- KEYS[1]  running    ZSET  job id -> lease deadline (ms)
-- KEYS[2]  leases     HASH  job id -> fencing token of the current holder
-- KEYS[3]  jobs       HASH  job id -> envelope
-- KEYS[4]  attempts   HASH  job id -> attempts started
-- KEYS[5]  errors     HASH  job id -> last error record
-- KEYS[6]  stats      HASH  event counters: `completed` += jobs acknowledged;
--                           `completed_trimmed` += completed jobs deleted by the retention
-- KEYS[7]  done       ZSET  job id -> time acknowledged (ms), kept for the dedup window
-- KEYS[8]  opts       HASH  job id -> how it is steered (schedule.lua, cancel.lua)
-- KEYS[9]  completed  ZSET  job id -> time it completed (ms), while kept
-- KEYS[10] results    HASH  job id -> its completion record (MessagePack, made by the worker:
--                           run time, result), while kept
-- KEYS[11] meta       HASH  `events` = N while the queue keeps an event log; `limits` = 1
--                           while it has limit rules; `prio` once it uses priorities
-- KEYS[12] events     STREAM the queue's event log (see the `events` snippet); meta's `events` bounds it
-- KEYS[13] limit_held ZSET  "key TAB id" of jobs running under a concurrency limit; with the
--                           next four, touched only when meta says `limits` (see `release`)
-- KEYS[14] limit_wait ZSET  "key TAB id" of jobs deferred by a concurrency limit
-- KEYS[15] scheduled  ZSET  where deferred jobs wait
-- KEYS[16] ready      LIST  where the first deferred job of a freed key goes
-- KEYS[17] bell       LIST  rung when that job goes to ready in a queue that uses priorities
--
-- ARGV[1]  dedup window in ms: acknowledged ids stay in `done` this long, so that a schedule
--          call sent again after a lost reply cannot make the job a second time (0: keep none,
--          which the worker sends when no job of the batch is recent enough to be resent)
-- ARGV[2]  the queue's `ended` channel: told (see the `tell` snippet) when an acknowledged
--          job had an opts entry (someone waits for it, or its cancellation was asked)
-- ARGV[3]  "": completed jobs are deleted; "AGE_MS,COUNT": they are kept in `completed`, at
--          most AGE_MS and at most COUNT of them (the queue's retention, as `claim.lua` read it
--          from meta); each call trims at most 100 beyond either bound, oldest first
-- ARGV[4 ..]  per job: id, the fencing token its caller holds, and with a retention its
--          completion record (at most a few thousand jobs: ids are unpacked onto Lua's stack)
--
-- Returns {r_1, ...}: 1 acknowledged, 0 refused because the caller no longer holds the lease.
-- One HMGET checks every token; the writes take the whole batch in one command each.
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
-- snippet: trim
-- Deletes the oldest members of `set` (a ZSET scored by time, ms) beyond a retention `spec`
-- ("AGE_MS,COUNT"; nil: none): those older than AGE_MS, then those beyond COUNT, at most
-- `limit` in all, with everything stored for them (`k` names the hashes: jobs, attempts,
-- errors, opts, and `extra`, one more or nil). Returns the ids deleted.
local function trim(set, spec, limit, now, k)
  if not spec then return {} end
  local age, count = string.match(spec, '^(%d+),(%d+)$')
  if not age then return {} end
  age, count = tonumber(age), tonumber(count)
  local ids = redis.call('ZRANGE', set, '-inf', '(' .. (now - age), 'BYSCORE', 'LIMIT', 0, limit)
  local over = redis.call('ZCARD', set) - #ids - count
  if over > 0 and #ids < limit then
    local more = redis.call('ZRANGE', set, #ids, #ids + math.min(over, limit - #ids) - 1)
    for _, id in ipairs(more) do ids[#ids + 1] = id end
  end
  if #ids > 0 then
    redis.call('ZREM', set, unpack(ids))
    if k.extra then redis.call('HDEL', k.extra, unpack(ids)) end
    redis.call('HDEL', k.jobs, unpack(ids))
    redis.call('HDEL', k.attempts, unpack(ids))
    redis.call('HDEL', k.errors, unpack(ids))
    redis.call('HDEL', k.opts, unpack(ids))
  end
  return ids
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
local window = tonumber(ARGV[1])
local keep = ARGV[3]
local stride = 2
if keep ~= '' then stride = 3 end
-- Tables are filled by counters: appending with `#t + 1` costs a search per job.
local ids, count = {}, 0
for i = 4, #ARGV, stride do
  count = count + 1
  ids[count] = ARGV[i]
end
local out = {}
if count == 0 then return out end
local tokens = redis.call('HMGET', KEYS[2], unpack(ids))
local done, records, seen, n = {}, {}, {}, 0
for k, id in ipairs(ids) do
  local at = 4 + stride * (k - 1)
  if tokens[k] == ARGV[at + 1] and not seen[id] then
    seen[id] = true
    n = n + 1
    done[n] = id
    if keep ~= '' then
      records[2 * n - 1], records[2 * n] = id, ARGV[at + 2]
    end
    out[k] = 1
  else
    out[k] = 0
  end
end
if n > 0 then
  redis.call('ZREM', KEYS[1], unpack(done))
  redis.call('HDEL', KEYS[2], unpack(done))
  local meta = redis.call('HMGET', KEYS[11], 'events', 'limits', 'prio')
  if meta[2] then
    release({held = KEYS[13], wait = KEYS[14], scheduled = KEYS[15], ready = KEYS[16],
      bell = KEYS[17], prio = meta[3]}, done, redis.call('HMGET', KEYS[8], unpack(done)))
  end
  -- snippet: now
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  -- end snippet
  local trimmed = {}
  if keep == '' then
    local jobs, attempts, errors, opts, gone = KEYS[3], KEYS[4], KEYS[5], KEYS[8], done
    -- snippet: forget
    redis.call('HDEL', jobs, unpack(gone))
    redis.call('HDEL', attempts, unpack(gone))
    redis.call('HDEL', errors, unpack(gone))
    local steered = redis.call('HDEL', opts, unpack(gone))
    -- end snippet
    if steered > 0 then tell(ARGV[2], 'completed\n' .. table.concat(done, '\n')) end
  else
    -- Kept: the envelope, attempts and last error stay for `get`; the record joins them.
    local entries, now_text = {}, string.format('%d', now)
    for i, id in ipairs(done) do
      entries[2 * i - 1], entries[2 * i] = now_text, id
    end
    redis.call('ZADD', KEYS[9], unpack(entries))
    redis.call('HSET', KEYS[10], unpack(records))
    if redis.call('HDEL', KEYS[8], unpack(done)) > 0 then
      tell(ARGV[2], 'completed\n' .. table.concat(done, '\n'))
    end
    -- The retention, bounded (the promoter's trim.lua also trims an idle queue).
    trimmed = trim(KEYS[9], keep, 100, now, {jobs = KEYS[3], attempts = KEYS[4],
      errors = KEYS[5], opts = KEYS[8], extra = KEYS[10]})
    if #trimmed > 0 then redis.call('HINCRBY', KEYS[6], 'completed_trimmed', #trimmed) end
  end
  -- Numbers every call passes go as text: redis.call formats a number with printf's "%.17g".
  redis.call('HINCRBY', KEYS[6], 'completed', string.format('%d', n))
  log.max = tonumber(meta[1]) or 0
  if log.max > 0 then
    for _, id in ipairs(done) do record('completed', id) end
    for _, id in ipairs(trimmed) do record('trimmed', id, nil, 'completed') end
    flush(KEYS[12], now)
  end
  if window > 0 then
    -- The time as text once, not formatted again for every job by redis.call.
    local entries, now_text = {}, string.format('%d', now)
    for i, id in ipairs(done) do
      entries[2 * i - 1], entries[2 * i] = now_text, id
    end
    redis.call('ZADD', KEYS[7], unpack(entries))
    redis.call('ZREMRANGEBYSCORE', KEYS[7], '-inf', string.format('%d', now - window))
    -- Without acks the set ages out as a whole: no leftover key once the queue is idle.
    redis.call('PEXPIRE', KEYS[7], ARGV[1])
  end
end
return out
