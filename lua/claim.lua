-- claim.lua: ready -> running, under a lease with a fresh fencing token.
--
-- KEYS[1]  ready     LIST  job ids, oldest first
-- KEYS[2]  running   ZSET  job id -> lease deadline (ms)
-- KEYS[3]  jobs      HASH  job id -> envelope
-- KEYS[4]  attempts  HASH  job id -> attempts started
-- KEYS[5]  leases    HASH  job id -> fencing token of the current holder
-- KEYS[6]  seq       STRING counter that mints fencing tokens
-- KEYS[7]  due       HASH  job id -> when it became due (ms), written by promote.lua
-- KEYS[8]  meta      HASH  `due` = 1: promote.lua records due times (set here on request);
--                           `paused` = 1: the queue is paused (pause.lua), nothing is claimed
--
-- ARGV[1]  the most jobs to claim (at most a few thousand: ids are unpacked onto Lua's stack)
-- ARGV[2]  lease length in ms
-- ARGV[3]  "1": this worker wants due times (recorded from now on); "0": it does not ask
--
-- Returns {deadline, id_1, token_1, attempt_1, envelope_1, due_1, id_2, ...}; just {deadline}
-- when nothing was ready; {0} when the queue is paused (nothing claimed). attempt counts this claim (the first run is attempt 1); due is when
-- the job became due (ms, as a string), or nil when due times are not recorded (no worker of
-- the queue asked for them) or the id was put in ready by other means.
--
-- Every write takes the whole batch in one command, so a call costs a fixed handful of
-- commands however many jobs it claims.
-- snippet: now
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
-- end snippet
local deadline = now + tonumber(ARGV[2])

local flags = redis.call('HMGET', KEYS[8], 'due', 'paused')
if flags[2] then return {0} end
local record_due = flags[1]
if not record_due and ARGV[3] == '1' then
  redis.call('HSET', KEYS[8], 'due', '1')
  record_due = '1'
end

local out = {deadline}
local popped = redis.call('LPOP', KEYS[1], tonumber(ARGV[1]))
if not popped then return out end
local envelopes = redis.call('HMGET', KEYS[3], unpack(popped))
local dues = {}
if record_due then
  dues = redis.call('HMGET', KEYS[7], unpack(popped))
  redis.call('HDEL', KEYS[7], unpack(popped))
end
-- Every id in ready has its envelope (cancel.lua removes both together); the check keeps a
-- hand-edited or foreign entry from becoming a running job with no data.
local ids, data, due = {}, {}, {}
for i, id in ipairs(popped) do
  if envelopes[i] then
    ids[#ids + 1] = id
    data[#data + 1] = envelopes[i]
    due[#due + 1] = dues[i] or false
  end
end
if #ids == 0 then return out end

local first_token = redis.call('INCRBY', KEYS[6], #ids) - #ids + 1
local started = redis.call('HMGET', KEYS[4], unpack(ids))
local running, leases, attempts = {}, {}, {}
for i, id in ipairs(ids) do
  local token = first_token + i - 1
  local attempt = (tonumber(started[i]) or 0) + 1
  running[2 * i - 1], running[2 * i] = deadline, id
  leases[2 * i - 1], leases[2 * i] = id, token
  attempts[2 * i - 1], attempts[2 * i] = id, attempt
  out[#out + 1] = id
  out[#out + 1] = token
  out[#out + 1] = attempt
  out[#out + 1] = data[i]
  out[#out + 1] = due[i]
end
redis.call('ZADD', KEYS[2], unpack(running))
redis.call('HSET', KEYS[5], unpack(leases))
redis.call('HSET', KEYS[4], unpack(attempts))
return out
