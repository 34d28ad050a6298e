-- schedule.lua: new -> scheduled (one call may carry many jobs).
--
-- KEYS[1]  scheduled  ZSET  member = job id, score = due time (ms, server clock)
-- KEYS[2]  jobs       HASH  job id -> envelope (MessagePack, written once)
-- KEYS[3]  stats      HASH  event counters: `scheduled` += jobs created
-- KEYS[4]  done       ZSET  ids acknowledged within the dedup window (see ack.lua)
--
-- ARGV[1]  wake channel: woken (see the `wake` snippet) when a job becomes the new head of `scheduled`
-- ARGV[2]  past tolerance in ms for absolute times; -1 accepts any time in the past
-- ARGV[3]  n, the number of jobs that follow (a few thousand at most: the created ones are
--          unpacked onto Lua's stack for one ZADD)
-- ARGV[4 + 4k .. 7 + 4k]  for job k (0-based): id, mode ("in" | "at"), ms, envelope
--          mode "in": due = server now + ms; mode "at": due = ms (unix ms)
--
-- Returns {now, r_1, ..., r_n} where r_k is
--    1  created
--    0  a job with this id already exists, or finished within the dedup window (nothing
--       written for it)
--   -1  "at" lies further in the past than the tolerance (nothing written for it)
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
local tolerance = tonumber(ARGV[2])
local n = tonumber(ARGV[3])

local recent = redis.call('EXISTS', KEYS[4]) == 1
local head = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local head_due = head[2] and tonumber(head[2]) or nil

local out = {now}
local earliest = nil
local created = 0
-- score, id pairs of the jobs created, for one ZADD at the end
local added = {}
for k = 0, n - 1 do
  local base = 4 + 4 * k
  local id, mode, ms, envelope = ARGV[base], ARGV[base + 1], tonumber(ARGV[base + 2]), ARGV[base + 3]
  local due
  if mode == 'in' then
    due = now + ms
  else
    due = ms
  end
  if mode == 'at' and tolerance >= 0 and due < now - tolerance then
    out[#out + 1] = -1
  elseif (recent and redis.call('ZSCORE', KEYS[4], id)) or
      redis.call('HSETNX', KEYS[2], id, envelope) == 0 then
    out[#out + 1] = 0
  else
    added[#added + 1] = due
    added[#added + 1] = id
    out[#out + 1] = 1
    created = created + 1
    if earliest == nil or due < earliest then earliest = due end
  end
end

local first = false
if created > 0 then
  redis.call('ZADD', KEYS[1], unpack(added))
  -- The queue's first jobs ever: announce the queue (see the `wake` snippet).
  first = redis.call('HINCRBY', KEYS[3], 'scheduled', created) == created
end
if earliest ~= nil and (head_due == nil or earliest < head_due) then
  wake(earliest, first)
end
return out
