-- claim.lua: ready -> running, under a lease with a fresh fencing token.
--
-- KEYS[1]  ready     LIST  job ids, oldest first
-- KEYS[2]  running   ZSET  job id -> lease deadline (ms)
-- KEYS[3]  jobs      HASH  job id -> envelope
-- KEYS[4]  attempts  HASH  job id -> attempts started
-- KEYS[5]  leases    HASH  job id -> fencing token of the current holder
-- KEYS[6]  seq       STRING counter that mints fencing tokens
--
-- ARGV[1]  the most jobs to claim
-- ARGV[2]  lease length in ms
--
-- Returns {deadline, id_1, token_1, attempt_1, envelope_1, id_2, ...}; just {deadline} when
-- nothing was ready. attempt counts this claim (the first run is attempt 1).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local deadline = now + tonumber(ARGV[2])

local out = {deadline}
local ids = redis.call('LPOP', KEYS[1], tonumber(ARGV[1]))
if not ids then return out end
for _, id in ipairs(ids) do
  local envelope = redis.call('HGET', KEYS[3], id)
  -- Every id in ready has its envelope (cancel.lua removes both together); the check keeps a
  -- hand-edited or foreign entry from becoming a running job with no data.
  if envelope then
    local token = redis.call('INCR', KEYS[6])
    redis.call('ZADD', KEYS[2], deadline, id)
    redis.call('HSET', KEYS[5], id, token)
    local attempt = redis.call('HINCRBY', KEYS[4], id, 1)
    out[#out + 1] = id
    out[#out + 1] = token
    out[#out + 1] = attempt
    out[#out + 1] = envelope
  end
end
return out
