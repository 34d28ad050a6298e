-- cron.lua: every change to a recurring schedule (src/cron.rs): add or edit, pause, resume,
-- remove. A schedule's state (`cron_at`: its revision, the last fire time whose occurrence
-- was created, the occurrences created ahead of their fire time, paused or not) is compared
-- and set: a call writes nothing unless the state is still the one its caller read. Promoters
-- creating occurrences do the same (schedule.lua's guard), so an edit and a promoter, or two
-- promoters, never both win.
--
-- KEYS[1]  cron       HASH  schedule id -> its spec (JSON, written by src/cron.rs)
-- KEYS[2]  cron_at    HASH  schedule id -> its state (JSON, written by src/cron.rs)
-- KEYS[3]  scheduled  ZSET  job id -> due time: occurrences not yet due are removed from it
-- KEYS[4]  jobs       HASH  job id -> envelope
-- KEYS[5]  attempts   HASH  job id -> attempts started
-- KEYS[6]  errors     HASH  job id -> last error record
-- KEYS[7]  opts       HASH  job id -> how it is steered
-- KEYS[8]  stats      HASH  event counters: `cancelled` += occurrences removed
-- KEYS[9]  meta       HASH  read for `events`
-- KEYS[10] events     STREAM the queue's event log (see the `events` snippet)
-- KEYS[11] cron_due   ZSET  schedule id -> when it next needs a promoter's pass (ms)
--
-- ARGV[1]  wake channel: told "cron" when a schedule is added, edited or resumed, so that
--          promoters read it at once (see the `wake` snippet)
-- ARGV[2]  schedule id
-- ARGV[3]  the state read ("" when there was no such schedule)
-- ARGV[4]  the new state ("" removes the schedule: spec and state)
-- ARGV[5]  the new spec ("" keeps the stored one)
-- ARGV[6]  when the schedule next needs a promoter's pass (ms; "" for never: paused, ended)
-- ARGV[7..] ids of occurrences to remove if they still wait for their due time (pause, remove)
--
-- Returns -1 when the state was not the one read (nothing written), else how many occurrences
-- were removed.
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
local id, read, state, spec, due = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
if (redis.call('HGET', KEYS[2], id) or '') ~= read then return -1 end
if state == '' then
  redis.call('HDEL', KEYS[1], id)
  redis.call('HDEL', KEYS[2], id)
else
  redis.call('HSET', KEYS[2], id, state)
  if spec ~= '' then redis.call('HSET', KEYS[1], id, spec) end
end
if state == '' or due == '' then
  redis.call('ZREM', KEYS[11], id)
else
  redis.call('ZADD', KEYS[11], due, id)
end
log.max = tonumber(redis.call('HGET', KEYS[9], 'events')) or 0
local gone = {}
for i = 7, #ARGV do
  if redis.call('ZREM', KEYS[3], ARGV[i]) == 1 then
    gone[#gone + 1] = ARGV[i]
    record('cancelled', ARGV[i], nil, 'schedule')
  end
end
if #gone > 0 then
  local jobs, attempts, errors, opts = KEYS[4], KEYS[5], KEYS[6], KEYS[7]
  -- snippet: forget
  redis.call('HDEL', jobs, unpack(gone))
  redis.call('HDEL', attempts, unpack(gone))
  redis.call('HDEL', errors, unpack(gone))
  local steered = redis.call('HDEL', opts, unpack(gone))
  -- end snippet
  redis.call('HINCRBY', KEYS[8], 'cancelled', #gone)
end
if state ~= '' then wake('cron', false) end
flush(KEYS[10])
return #gone
