-- revive.lua: dead -> scheduled, due now, with attempts reset (the last error is kept for the
-- record). This is `punctual dead retry`.
--
-- KEYS[1]  dead       ZSET  job id -> time it died (ms)
-- KEYS[2]  scheduled  ZSET  job id -> due time (ms)
-- KEYS[3]  attempts   HASH  job id -> attempts started
-- KEYS[4]  stats      HASH  event counters: `revived` += jobs moved
--
-- ARGV[1]  wake channel, PUBLISHed to when a revived job becomes the head of scheduled
-- ARGV[2]  n > 0: revive the n jobs that died first; 0: revive the ids that follow
-- ARGV[3..]  job ids (when ARGV[2] is 0)
--
-- Returns {now, id_1, ...}: the ids revived. An id that is not in the dead set is skipped.
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
for _, id in ipairs(candidates) do
  if redis.call('ZREM', KEYS[1], id) == 1 then
    redis.call('HDEL', KEYS[3], id)
    redis.call('ZADD', KEYS[2], now, id)
    out[#out + 1] = id
  end
end
if #out > 1 then
  redis.call('HINCRBY', KEYS[4], 'revived', #out - 1)
  if head[2] == nil or now < tonumber(head[2]) then
    redis.call('PUBLISH', ARGV[1], now)
  end
end
return out
