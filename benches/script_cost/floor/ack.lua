-- A measuring stick, not part of punctual: the least an ack can do with punctual's layout (see
-- floor/claim.lua): read what stands for the token (the attempt), drop the job from every
-- place, count it, and keep the dedup record while the window asks for one. It refuses
-- nothing: the driver never sends a stale token. Keys and arguments as ack.lua's.
local ids, count = {}, 0
for i = 4, #ARGV, 2 do
  count = count + 1
  ids[count] = ARGV[i]
end
redis.call('HMGET', KEYS[4], unpack(ids))
local out = {}
for k = 1, count do out[k] = 1 end
redis.call('ZREM', KEYS[1], unpack(ids))
redis.call('HDEL', KEYS[3], unpack(ids))
redis.call('HDEL', KEYS[4], unpack(ids))
redis.call('HDEL', KEYS[5], unpack(ids))
redis.call('HDEL', KEYS[8], unpack(ids))
redis.call('HINCRBY', KEYS[6], 'completed', string.format('%d', count))
local window = tonumber(ARGV[1])
if window > 0 then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local entries, now_text = {}, string.format('%d', now)
  for i, id in ipairs(ids) do
    entries[2 * i - 1], entries[2 * i] = now_text, id
  end
  redis.call('ZADD', KEYS[7], unpack(entries))
  redis.call('ZREMRANGEBYSCORE', KEYS[7], '-inf', string.format('%d', now - window))
  redis.call('PEXPIRE', KEYS[7], ARGV[1])
end
return out
