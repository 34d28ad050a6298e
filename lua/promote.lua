-- promote.lua: scheduled -> ready for due jobs, and running -> ready for expired leases.
--
-- KEYS[1]  scheduled  ZSET  job id -> due time (ms)
-- KEYS[2]  ready      LIST  job ids, oldest first (RPUSH here, LPOP in claim.lua)
-- KEYS[3]  running    ZSET  job id -> lease deadline (ms)
-- KEYS[4]  leases     HASH  job id -> fencing token of the current holder
-- KEYS[5]  attempts   HASH  job id -> attempts started
-- KEYS[6]  errors     HASH  job id -> last error record (JSON)
-- KEYS[7]  stats      HASH  event counters: `promoted`, `expired` += jobs moved
-- KEYS[8]  meta       HASH  `format` -> storage format, written when the queue is opened;
--                           `due` = 1 once a worker asked for due times (claim.lua)
-- KEYS[9]  due        HASH  job id -> when it became due (ms), while it waits in ready: the
--                           due time of a promoted job, the lease deadline of an expired one;
--                           written only when meta says `due` (nothing is spent otherwise)
--
-- ARGV[1]  batch: at most this many due jobs and at most this many expired leases per call
-- ARGV[2]  storage format, written back to meta when meta is missing
-- ARGV[3 .. 2 + b]  upper bounds (ms, inclusive, ascending) of b promotion-lag buckets
--
-- Returns {now, promoted, expired, next_due, next_lease, max_lag, sum_lag, lost, n_1, ...,
--          n_(b+1)}
--   now         server time (ms) this call used
--   promoted    jobs moved scheduled -> ready (== batch means: call again)
--   expired     leases that ended: those jobs moved running -> ready (== batch: call again)
--   next_due    due time of the new head of scheduled, or -1 when it is empty
--   next_lease  earliest lease deadline in running, or -1 when it is empty
--   max_lag     largest promotion lag (now - due, ms) among the promoted jobs, 0 when none
--   sum_lag     sum of the promoted jobs' lags, ms
--   lost        1 when meta was missing: Redis lost the queue's data since it was opened
--               (restarted without persistence, flushed, or failed over to a stale replica);
--               meta is written again so that this is reported once
--   n_i         promoted jobs whose lag is at most bound i (and above bound i - 1); n_(b+1)
--               counts those above the last bound
-- Counting here keeps the reply a few integers however many jobs move.
-- A job is never promoted before its due time: only scores <= now are taken.
-- snippet: now
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
-- end snippet
local batch = tonumber(ARGV[1])

local meta = redis.call('HMGET', KEYS[8], 'format', 'due')
local record_due = meta[2]
local lost = 0
if not meta[1] then
  redis.call('HSET', KEYS[8], 'format', ARGV[2])
  lost = 1
end

local bounds = {}
for i = 3, #ARGV do bounds[#bounds + 1] = tonumber(ARGV[i]) end
local counts = {}
for i = 1, #bounds + 1 do counts[i] = 0 end

local due = redis.call('ZRANGE', KEYS[1], '-inf', now, 'BYSCORE', 'LIMIT', 0, batch, 'WITHSCORES')
-- `due` alternates id, score: exactly the field/value pairs HSET wants for KEYS[9].
local ids = {}
local max_lag, sum_lag = 0, 0
-- Jobs come oldest first, so lags only fall: the bucket index only moves down.
local bucket = #bounds + 1
for i = 1, #due, 2 do
  ids[#ids + 1] = due[i]
  local lag = now - tonumber(due[i + 1])
  if lag > max_lag then max_lag = lag end
  sum_lag = sum_lag + lag
  while bucket > 1 and lag <= bounds[bucket - 1] do bucket = bucket - 1 end
  counts[bucket] = counts[bucket] + 1
end
if #ids > 0 then
  redis.call('ZREM', KEYS[1], unpack(ids))
  redis.call('RPUSH', KEYS[2], unpack(ids))
  if record_due then redis.call('HSET', KEYS[9], unpack(due)) end
  redis.call('HINCRBY', KEYS[7], 'promoted', #ids)
end

local leases = redis.call('ZRANGE', KEYS[3], '-inf', now, 'BYSCORE', 'LIMIT', 0, batch, 'WITHSCORES')
local expired = {}
for i = 1, #leases, 2 do expired[#expired + 1] = leases[i] end
if #expired > 0 then
  redis.call('ZREM', KEYS[3], unpack(expired))
  redis.call('HDEL', KEYS[4], unpack(expired))
  for _, id in ipairs(expired) do
    local attempt = tonumber(redis.call('HGET', KEYS[5], id) or '0')
    redis.call('HSET', KEYS[6], id, cjson.encode({
      reason = 'lease_expired',
      message = 'the worker holding the job stopped renewing its lease (crashed, stalled or cut off)',
      at = now,
      attempt = attempt,
    }))
  end
  redis.call('RPUSH', KEYS[2], unpack(expired))
  if record_due then redis.call('HSET', KEYS[9], unpack(leases)) end
  redis.call('HINCRBY', KEYS[7], 'expired', #expired)
end

local head = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local lease = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
local out = {
  now,
  #ids,
  #expired,
  head[2] and tonumber(head[2]) or -1,
  lease[2] and tonumber(lease[2]) or -1,
  max_lag,
  sum_lag,
  lost,
}
for i = 1, #counts do out[8 + i] = counts[i] end
return out
