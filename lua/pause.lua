-- pause.lua: pause or resume one partition of a queue (`punctual pause` / `resume`). No job
-- changes state: while `meta` has `paused`, claim.lua claims nothing (promotion goes on, so
-- nothing is late to promote on resume). Workers that found the queue paused block on `gate`
-- (BLMOVE gate gate), which a resume fills, so they wake at once instead of polling.
--
-- KEYS[1]  meta  HASH  `paused` = 1 while paused
-- KEYS[2]  gate  LIST  one element for a minute after a resume: wakes workers waiting it out
--
-- ARGV[1]  "1": pause; "0": resume
--
-- Returns 1 when the partition's state changed, 0 when it already was so.
if ARGV[1] == '1' then
  redis.call('DEL', KEYS[2])
  return redis.call('HSETNX', KEYS[1], 'paused', '1')
end
local changed = redis.call('HDEL', KEYS[1], 'paused')
redis.call('DEL', KEYS[2])
redis.call('RPUSH', KEYS[2], '1')
redis.call('PEXPIRE', KEYS[2], 60000)
return changed
