-- trim.lua: dead -> gone and completed -> gone, beyond the queue's retentions (`meta`
-- `keep_dead`, `keep_completed`: "AGE_MS,COUNT"), oldest first and bounded, with everything
-- stored for each job. Run by the promoter for every partition it serves, once a heartbeat, so
-- that the bounds hold on an idle queue too (ack.lua trims completed jobs as they come).
--
-- KEYS[1]  dead       ZSET  job id -> time it died (ms)
-- KEYS[2]  completed  ZSET  job id -> time it completed (ms)
-- KEYS[3]  results    HASH  job id -> its completion record
-- KEYS[4]  jobs       HASH  job id -> envelope
-- KEYS[5]  attempts   HASH  job id -> attempts started
-- KEYS[6]  errors     HASH  job id -> last error record
-- KEYS[7]  opts       HASH  job id -> how it is steered
-- KEYS[8]  stats      HASH  event counters: `dead_trimmed`, `completed_trimmed` += jobs deleted
-- KEYS[9]  meta       HASH  `keep_dead`, `keep_completed`: the retentions (absent: none);
--                           `events` = N while the queue keeps an event log
-- KEYS[10] events     STREAM the queue's event log (see the `events` snippet); meta's `events` bounds it
--
-- ARGV[1]  the most jobs deleted from each set per call
--
-- Returns {dead trimmed, completed trimmed}; a count equal to ARGV[1] means: call again.
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
local limit = tonumber(ARGV[1])
local keep = redis.call('HMGET', KEYS[9], 'keep_dead', 'keep_completed', 'events')
if not keep[1] and not keep[2] then return {0, 0} end
log.max = tonumber(keep[3]) or 0
local dead = trim(KEYS[1], keep[1] or nil, limit, now, {jobs = KEYS[4], attempts = KEYS[5],
  errors = KEYS[6], opts = KEYS[7]})
local completed = trim(KEYS[2], keep[2] or nil, limit, now, {jobs = KEYS[4], attempts = KEYS[5],
  errors = KEYS[6], opts = KEYS[7], extra = KEYS[3]})
if #dead > 0 then redis.call('HINCRBY', KEYS[8], 'dead_trimmed', #dead) end
if #completed > 0 then redis.call('HINCRBY', KEYS[8], 'completed_trimmed', #completed) end
for _, id in ipairs(dead) do record('trimmed', id, nil, 'dead') end
for _, id in ipairs(completed) do record('trimmed', id, nil, 'completed') end
flush(KEYS[10], now)
return {#dead, #completed}
