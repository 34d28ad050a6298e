-- remove.lua: a whole queue -> gone (`punctual queue rm`). Refuses while the queue holds jobs
-- or recurring schedules, unless forced. The registry entry is removed by the caller after this (it is outside the
-- queue's hash tag).
--
-- KEYS[1]   scheduled  ZSET
-- KEYS[2]   ready      LIST
-- KEYS[3]   running    ZSET
-- KEYS[4]   dead       ZSET
-- KEYS[5]   jobs       HASH  job id -> envelope: the jobs counted
-- KEYS[6]   attempts   HASH
-- KEYS[7]   leases     HASH
-- KEYS[8]   errors     HASH
-- KEYS[9]   due        HASH
-- KEYS[10]  done       ZSET
-- KEYS[11]  seq        STRING
-- KEYS[12]  meta       HASH
-- KEYS[13]  stats      HASH
-- KEYS[14]  gate       LIST  (pause.lua)
-- KEYS[15]  opts       HASH  (schedule.lua, cancel.lua)
-- KEYS[16]  completed  ZSET  (ack.lua)
-- KEYS[17]  results    HASH  (ack.lua)
-- KEYS[18]  ranked     ZSET  (promote.lua)
-- KEYS[19]  bell       LIST  (promote.lua)
-- KEYS[20]  events     STREAM (the event log)
-- KEYS[21]  cron       HASH  (cron.lua: recurring schedules): the schedules counted
-- KEYS[22]  cron_at    HASH  (cron.lua, schedule.lua)
-- KEYS[23]  cron_due   ZSET  (cron.lua, schedule.lua)
-- KEYS[24]  limits     HASH  (src/limits.rs: limit rules)
-- KEYS[25]  limit_tat  HASH  (claim.lua)
-- KEYS[26]  limit_held ZSET  (claim.lua, ack.lua)
-- KEYS[27]  limit_wait ZSET  (claim.lua, ack.lua)
-- KEYS[28]  limit_stats HASH (claim.lua)
--
-- ARGV[1]  "1": delete the jobs and schedules too; "0": refuse when there are any
--
-- Returns {removed, jobs, schedules}: removed is 1 when every key was deleted, 0 when refused;
-- jobs and schedules are how many the queue held (deleted when removed). UNLINK frees large keys in the
-- background, so a big queue does not block the server.
local jobs = redis.call('HLEN', KEYS[5])
local schedules = redis.call('HLEN', KEYS[21])
if jobs + schedules > 0 and ARGV[1] ~= '1' then return {0, jobs, schedules} end
redis.call('UNLINK', unpack(KEYS))
return {1, jobs, schedules}
