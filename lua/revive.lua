-- revive.lua: dead -> scheduled, due now, with attempts reset (the last error is kept for the
-- record) and its opts entry dropped (an expiry no longer applies). This is `punctual dead retry`.
--
-- KEYS[1]  dead       ZSET  job id -> time it died (ms)
-- KEYS[2]  scheduled  ZSET  job id -> due time (ms)
-- KEYS[3]  attempts   HASH  job id -> attempts started
-- KEYS[4]  stats      HASH  event counters: `revived` += jobs moved
-- KEYS[5]  opts       HASH  job id -> how it is steered
-- KEYS[6]  meta       HASH  `events` = N while the queue keeps an event log
-- KEYS[7]  events     STREAM the queue's event log (see the `events` snippet); meta's `events` bounds it
--
-- ARGV[1]  wake channel, woken (see the `wake` snippet) when a revived job becomes the head of scheduled
-- ARGV[2]  n > 0: revive the n jobs that died first; 0: revive the ids that follow
-- ARGV[3..]  job ids (when ARGV[2] is 0)
--
-- Returns {now, id_1, ...}: the ids revived. An id that is not in the dead set is skipped.
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
local n = tonumber(ARGV[2])

local candidates
if n > 0 then
  candidates = redis.call('ZRANGE', KEYS[1], 0, n - 1)
else
  candidates = {unpack(ARGV, 3)}
end

local head = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
local out = {now}
log.max = tonumber(redis.call('HGET', KEYS[6], 'events')) or 0
for _, id in ipairs(candidates) do
  if redis.call('ZREM', KEYS[1], id) == 1 then
    redis.call('HDEL', KEYS[3], id)
    redis.call('HDEL', KEYS[5], id)
    redis.call('ZADD', KEYS[2], now, id)
    out[#out + 1] = id
    record('revived', id)
  end
end
if #out > 1 then
  redis.call('HINCRBY', KEYS[4], 'revived', #out - 1)
  if head[2] == nil or now < tonumber(head[2]) then
    wake(now, false)
  end
end
flush(KEYS[7], now)
return out
