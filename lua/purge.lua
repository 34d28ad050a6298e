-- purge.lua: dead -> gone. Deletes dead jobs and everything stored for them. This is
-- `punctual dead purge`; only jobs in the dead set are ever touched.
--
-- KEYS[1]  dead      ZSET  job id -> time it died (ms)
-- KEYS[2]  jobs      HASH  job id -> envelope
-- KEYS[3]  attempts  HASH  job id -> attempts started
-- KEYS[4]  errors    HASH  job id -> last error record
-- KEYS[5]  stats     HASH  event counters: `purged` += jobs deleted
-- KEYS[6]  opts      HASH  job id -> how it is steered
-- KEYS[7]  meta      HASH  `events` = N while the queue keeps an event log
-- KEYS[8]  events    STREAM the queue's event log (see the `events` snippet); meta's `events` bounds it
--
-- ARGV[1]  n > 0: purge at most n jobs, those that died first, selected by ARGV[2];
--          0: purge the ids that follow
-- ARGV[2]  minimum age in ms (died at or before server now - age); -1: any age
-- ARGV[3..]  job ids (when ARGV[1] is 0)
--
-- Returns {now, id_1, ...}: the ids purged. An id that is not in the dead set is skipped.
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
local n = tonumber(ARGV[1])
local age = tonumber(ARGV[2])

local candidates
if n > 0 then
  local max = '+inf'
  if age >= 0 then max = now - age end
  candidates = redis.call('ZRANGE', KEYS[1], '-inf', max, 'BYSCORE', 'LIMIT', 0, n)
else
  candidates = {unpack(ARGV, 3)}
end

local out, gone = {now}, {}
log.max = tonumber(redis.call('HGET', KEYS[7], 'events')) or 0
for _, id in ipairs(candidates) do
  if redis.call('ZREM', KEYS[1], id) == 1 then
    gone[#gone + 1] = id
    out[#out + 1] = id
    record('purged', id)
  end
end
if #gone > 0 then
  local jobs, attempts, errors, opts = KEYS[2], KEYS[3], KEYS[4], KEYS[6]
  -- snippet: forget
  redis.call('HDEL', jobs, unpack(gone))
  redis.call('HDEL', attempts, unpack(gone))
  redis.call('HDEL', errors, unpack(gone))
  local steered = redis.call('HDEL', opts, unpack(gone))
  -- end snippet
  redis.call('HINCRBY', KEYS[5], 'purged', #gone)
end
flush(KEYS[8], now)
return out
