-- purge.lua: dead -> gone. Deletes dead jobs and everything stored for them. This is
-- `punctual dead purge`; only jobs in the dead set are ever touched.
--
-- KEYS[1]  dead      ZSET  job id -> time it died (ms)
-- KEYS[2]  jobs      HASH  job id -> envelope
-- KEYS[3]  attempts  HASH  job id -> attempts started
-- KEYS[4]  errors    HASH  job id -> last error record
-- KEYS[5]  stats     HASH  event counters: `purged` += jobs deleted
-- KEYS[6]  opts      HASH  job id -> how it is steered
--
-- ARGV[1]  n > 0: purge at most n jobs, those that died first, selected by ARGV[2];
--          0: purge the ids that follow
-- ARGV[2]  minimum age in ms (died at or before server now - age); -1: any age
-- ARGV[3..]  job ids (when ARGV[1] is 0)
--
-- Returns {now, id_1, ...}: the ids purged. An id that is not in the dead set is skipped.
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
for _, id in ipairs(candidates) do
  if redis.call('ZREM', KEYS[1], id) == 1 then
    gone[#gone + 1] = id
    out[#out + 1] = id
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
return out
