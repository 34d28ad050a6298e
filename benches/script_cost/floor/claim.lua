-- A measuring stick, not part of punctual: the least a claim can do with punctual's layout and
-- still give every job a lease deadline, an attempt count and a fencing token (one INCR per
-- call) but no `leases` entry, as it would if the attempt number were the token (see
-- BENCHMARKS.md, "The floor of the scripts"). No meta flags, no pause, no priorities, no
-- limits, no expiry, no due times, no events. Keys and arguments as claim.lua's, so that
-- `cost.sh benches/script_cost/floor` drives it the same way.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local deadline = now + tonumber(ARGV[2])
local out = {deadline, '', 0}
local popped = redis.call('LPOP', KEYS[1], ARGV[1]) or {}
if #popped == 0 then return out end
local envelopes = redis.call('HMGET', KEYS[3], unpack(popped))
local token = redis.call('INCR', KEYS[6])
local deadline_text = string.format('%d', deadline)
local started = redis.call('HMGET', KEYS[4], unpack(popped))
local running, attempts = {}, {}
local o = 3
for i, id in ipairs(popped) do
  local attempt = (tonumber(started[i]) or 0) + 1
  running[2 * i - 1], running[2 * i] = deadline_text, id
  attempts[2 * i - 1], attempts[2 * i] = id, string.format('%d', attempt)
  out[o + 1], out[o + 2], out[o + 3], out[o + 4], out[o + 5] = id, token, attempt, envelopes[i], false
  o = o + 5
end
redis.call('ZADD', KEYS[2], unpack(running))
redis.call('HSET', KEYS[4], unpack(attempts))
return out
