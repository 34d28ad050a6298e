-- schedule.lua: new -> scheduled (one call may carry many jobs), and, when the caller asks, a
-- waiting job with the same id is replaced, debounced or kept (conflict modes).
--
-- KEYS[1]   scheduled  ZSET  member = job id, score = due time (ms, server clock)
-- KEYS[2]   jobs       HASH  job id -> envelope (MessagePack)
-- KEYS[3]   stats      HASH  event counters: `scheduled` += jobs created
-- KEYS[4]   done       ZSET  ids acknowledged within the dedup window (see ack.lua)
-- KEYS[5]   ready      LIST  job ids due and waiting for a worker
-- KEYS[6]   running    ZSET  job id -> lease deadline (ms)
-- KEYS[7]   dead       ZSET  job id -> time it died (ms)
-- KEYS[8]   attempts   HASH  job id -> attempts started
-- KEYS[9]   errors     HASH  job id -> last error record
-- KEYS[10]  due        HASH  job id -> when it became due (ms), while ready
-- KEYS[11]  opts       HASH  job id -> options the scripts act on later (JSON, see below)
-- KEYS[12]  meta       HASH  `opts` = 1 once any job of the queue has an entry in opts;
--                            `prio` = 1 once any job was scheduled with a priority
-- KEYS[13]  completed  ZSET  job id -> time it completed (ms), while the retention keeps it
-- KEYS[14]  results    HASH  job id -> its completion record, while kept
-- KEYS[15]  ranked     ZSET  ready job ids of a queue that uses priorities, by rank
-- KEYS[16]  events     STREAM the queue's event log (see the `events` snippet); meta's `events` bounds it
-- KEYS[17]  cron_at    HASH  recurring schedule id -> its state (cron.lua); read only by a call
--                            with a guard (below), so callers without one may pass 16 keys
-- KEYS[18]  cron_due   ZSET  recurring schedule id -> when it next needs a pass (guard only)
--
-- ARGV[1]  wake channel: woken (see the `wake` snippet) when a job becomes the new head of `scheduled`
-- ARGV[2]  past tolerance in ms for absolute times; -1 accepts any time in the past
-- ARGV[3]  n, the number of jobs that follow (a few thousand at most: the created ones are
--          unpacked onto Lua's stack for one ZADD)
-- ARGV[4 + 5k .. 8 + 5k]  for job k (0-based): id, mode ("in" | "at"), ms, envelope, options
--          mode "in": due = server now + 1 + ms when ms > 0 (now is whole ms, so + 1 keeps
--          the job from being due before the instant asked for), server now when ms = 0;
--          mode "at": due = ms (unix ms)
--          options: "" for none, or a JSON object with any of
--            on_conflict   "reject" (default) | "replace" | "debounce" | "keep_earliest" |
--                          "keep_latest": what happens when a job with this id exists
--            max_wait      ms (debounce): the due time never moves past first scheduling + this
--            expires_at    unix ms: the job is not run after this time
--            max_lateness  ms: the job is not run later than this after its due time
--            on_expiry     "dead" (default: dead set, reason `expired`) | "drop" (deleted)
--            undo          {"id": ..., "e": hex envelope}: the compensating job scheduled,
--                          due now, when this job dies after it ran (kept in its opts entry;
--                          see the `compensate` snippet of bury.lua)
--            lk            the job's limit key (1-200 bytes, no tab or newline): claim.lua starts
--                          it only as the queue's limit rule for the key allows (kept in its
--                          opts entry, which makes claim.lua read opts)
--            priority      -9..9, not 0: the queue uses priorities from now on (meta `prio`:
--                          promote.lua ranks its ready jobs); the job's own priority is the
--                          envelope's `p`, which this only announces
-- Guard (optional; how promoters create a recurring schedule's occurrences, src/cron.rs): four
-- more arguments after the jobs, the schedule id, the state the caller read from `cron_at`
-- ("" for none), the state to write, and when the schedule next needs a pass (ms, for
-- `cron_due`; "" for never). Unless `cron_at` still holds the state read, nothing is written
-- and the reply is {now, -2}; otherwise the new state is written with the jobs, in one step,
-- so of any number of promoters exactly one creates each occurrence.
--
-- Returns {now, r_1, ..., r_n, d_1, ..., d_m} where r_k is
--    1  created
--    0  rejected: a job with this id exists (or, in mode reject, finished within the dedup
--       window); nothing written
--    2  replaced: the waiting job got the new data and due time (replace, keep_*)
--    3  debounced: the waiting job got the new data and the new due time, capped by max_wait
--    4  kept: the waiting job is left as it is (keep_*: its due time won)
--    5  running: the job is running; never touched, nothing written
--   -1  "at" lies further in the past than the tolerance (nothing written for it)
-- and d_1 .. d_m are the due times now (ms, or -1 when the job is not waiting in `scheduled`:
-- ready, running, dead, finished) of the jobs whose r_k is 0, 2, 3, 4 or 5, in job order. A
-- created job's due time is the one asked for: now + 1 + ms for "in" (now for ms = 0), ms
-- for "at" (so the reply
-- of a call that only creates jobs stays one integer per job).
--
-- A conflict mode other than reject treats a job that finished (dead, completed and kept, or
-- acknowledged within the dedup window) as absent: a new job is created (a dead or kept one is
-- deleted first). A waiting
-- job that is replaced or debounced starts afresh: new envelope and options, attempts and
-- last error cleared. A malformed options object fails the whole call before anything is
-- written.
-- snippet: events
-- The queue's event log. While `meta` says `events` = N (the script sets `log.max` to N),
-- every change the call makes is recorded as one line, "event TAB id TAB attempt TAB reason"
-- (attempt and reason may be empty), and `flush` writes the call's lines in ONE XADD to the
-- `events` stream (fields `t`: server ms, `now` or read here, `e`: the lines), trimmed to
-- about N entries. With `log.max` 0 nothing is collected or written.
local log = {max = 0, lines = {}}
local function record(event, id, attempt, reason)
  if log.max > 0 then
    log.lines[#log.lines + 1] = event .. '\t' .. id .. '\t' .. (attempt and tostring(attempt) or '')
      .. '\t' .. (reason or '')
  end
end
local function flush(key, now)
  if #log.lines > 0 then
    if not now then
      local t = redis.call('TIME')
      now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
    end
    redis.call('XADD', key, 'MAXLEN', '~', log.max, '*', 't', now, 'e', table.concat(log.lines, '\n'))
    log.lines = {}
  end
end
-- end snippet
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
local guard = 3 + 5 * n
local MODES = {reject = true, replace = true, debounce = true, keep_earliest = true, keep_latest = true}

-- Every job's options first: a malformed one fails the call before anything is written.
local options = {}
local with_priority = false
for k = 0, n - 1 do
  local text = ARGV[8 + 5 * k]
  if text ~= '' then
    local ok, o = pcall(cjson.decode, text)
    local good = ok and type(o) == 'table' and (o.on_conflict == nil or MODES[o.on_conflict])
      and (o.on_expiry == nil or o.on_expiry == 'dead' or o.on_expiry == 'drop')
    if good then
      for _, field in ipairs({'max_wait', 'expires_at', 'max_lateness', 'priority'}) do
        if o[field] ~= nil and type(o[field]) ~= 'number' then good = false end
      end
      local lk = o.lk
      if lk ~= nil and (type(lk) ~= 'string' or #lk == 0 or #lk > 200 or string.find(lk, '[\t\n]')) then
        good = false
      end
      local undo = o.undo
      if undo ~= nil and (type(undo) ~= 'table' or type(undo.id) ~= 'string' or
          type(undo.e) ~= 'string' or string.find(undo.e, '[^%x]') or #undo.e % 2 ~= 0) then
        good = false
      end
    end
    if not good then
      return redis.error_reply('ERR punctual: job ' .. (k + 1) .. ' (' .. ARGV[4 + 5 * k] ..
        ') has malformed options: ' .. text)
    end
    options[k] = o
    if o.priority and o.priority ~= 0 then with_priority = true end
  end
end

if #ARGV > guard then
  if (redis.call('HGET', KEYS[17], ARGV[guard + 1]) or '') ~= ARGV[guard + 2] then
    return {now, -2}
  end
  redis.call('HSET', KEYS[17], ARGV[guard + 1], ARGV[guard + 3])
  if ARGV[guard + 4] == '' then
    redis.call('ZREM', KEYS[18], ARGV[guard + 1])
  else
    redis.call('ZADD', KEYS[18], ARGV[guard + 4], ARGV[guard + 1])
  end
end

local recent = redis.call('EXISTS', KEYS[4]) == 1
log.max = tonumber(redis.call('HGET', KEYS[12], 'events')) or 0

local out = {now}
-- Due times of the jobs that were not created (nor too far in the past), in order: appended
-- after the codes.
local dues = {}
-- The earliest due time this call gave a job in `scheduled`, and the ids it gave it: the
-- promoters are woken when one of them is the head afterwards (see the end).
local earliest, at_earliest = nil, {}
local created = 0
local with_options = false
-- score, id pairs of the jobs created, for one ZADD at the end; `n_added` entries (appending
-- with `#t + 1` would cost a search per job)
local added, n_added = {}, 0
-- id -> index in `added` of the score of a job this call created: made on first need (an id
-- met again in the same call), so a call of distinct ids never pays for it
local fresh = nil
local function fresh_index(id)
  if fresh == nil then
    fresh = {}
    for i = 2, n_added, 2 do fresh[added[i]] = i - 1 end
  end
  return fresh[id]
end

local function note(id, due)
  if earliest == nil or due < earliest then
    earliest, at_earliest = due, {[id] = true}
  elseif due == earliest then
    at_earliest[id] = true
  end
end

-- Writes (or clears) the job's entry in opts: its expiry deadline and debounce cap, and the
-- mark of a caller waiting for its end (wait.lua), which a replaced job keeps.
local function store_options(id, o, due, cap, wait)
  local deadline = o.expires_at
  if o.max_lateness then
    local late = due + o.max_lateness
    if deadline == nil or late < deadline then deadline = late end
  end
  if deadline == nil and cap == nil and not wait and o.undo == nil and o.lk == nil then
    redis.call('HDEL', KEYS[11], id)
    return
  end
  redis.call('HSET', KEYS[11], id, cjson.encode({
    deadline = deadline,
    expires_at = o.expires_at,
    max_lateness = o.max_lateness,
    drop = o.on_expiry == 'drop' or nil,
    cap = cap,
    wait = wait,
    undo = o.undo,
    lk = o.lk,
  }))
  -- Only what promote.lua and claim.lua act on makes them read opts.
  if deadline ~= nil or o.lk ~= nil then with_options = true end
end

local function create(id, due, o)
  added[n_added + 1], added[n_added + 2] = due, id
  n_added = n_added + 2
  if fresh then fresh[id] = n_added - 1 end
  created = created + 1
  if log.max > 0 then record('scheduled', id) end
  note(id, due)
  if o then
    local cap = nil
    if o.on_conflict == 'debounce' and o.max_wait then cap = now + o.max_wait end
    store_options(id, o, due, cap)
  end
end

-- Where an existing job is, and its due time when known.
local function state_of(id)
  local at = fresh_index(id)
  if at then return 'scheduled', added[at] end
  local score = redis.call('ZSCORE', KEYS[1], id)
  if score then return 'scheduled', tonumber(score) end
  if redis.call('ZSCORE', KEYS[6], id) then return 'running', nil end
  if redis.call('ZSCORE', KEYS[7], id) then return 'dead', nil end
  if redis.call('ZSCORE', KEYS[13], id) then return 'completed', nil end
  local became = redis.call('HGET', KEYS[10], id)
  return 'ready', became and tonumber(became) or now
end

for k = 0, n - 1 do
  local base = 4 + 5 * k
  local id, mode, ms, envelope = ARGV[base], ARGV[base + 1], tonumber(ARGV[base + 2]), ARGV[base + 3]
  local o = options[k]
  local conflict = (o and o.on_conflict) or 'reject'
  local due
  if mode == 'in' and ms > 0 then
    -- now + 1: the server's clock in whole ms, rounded up, so that a job is never due
    -- before the instant asked for (the reply's `now` lets a client compute it).
    due = now + 1 + ms
  elseif mode == 'in' then
    due = now
  else
    due = ms
  end
  if mode == 'at' and tolerance >= 0 and due < now - tolerance then
    out[#out + 1] = -1
  elseif conflict == 'reject' then
    if (recent and redis.call('ZSCORE', KEYS[4], id)) or
        redis.call('HSETNX', KEYS[2], id, envelope) == 0 then
      local state, at = state_of(id)
      out[#out + 1] = 0
      dues[#dues + 1] = (state == 'scheduled' and at) or -1
    else
      create(id, due, o)
      out[#out + 1] = 1
    end
  elseif redis.call('HSETNX', KEYS[2], id, envelope) == 1 then
    create(id, due, o)
    out[#out + 1] = 1
  else
    local state, old = state_of(id)
    if state == 'running' then
      out[#out + 1] = 5
      dues[#dues + 1] = -1
    elseif state == 'dead' or state == 'completed' then
      -- Finished: the id is free for a new job.
      redis.call('ZREM', KEYS[7], id)
      redis.call('ZREM', KEYS[13], id)
      redis.call('HDEL', KEYS[14], id)
      redis.call('HDEL', KEYS[8], id)
      redis.call('HDEL', KEYS[9], id)
      redis.call('HDEL', KEYS[11], id)
      redis.call('HSET', KEYS[2], id, envelope)
      create(id, due, o)
      out[#out + 1] = 1
    else
      local new, code, cap = due, 2, nil
      local previous = redis.call('HGET', KEYS[11], id)
      previous = previous and cjson.decode(previous) or {}
      if conflict == 'debounce' then
        code = 3
        cap = previous.cap
        if cap == nil and o.max_wait then cap = now + o.max_wait end
        if cap and new > cap then new = cap end
      elseif conflict == 'keep_earliest' and due >= old then
        code = 4
      elseif conflict == 'keep_latest' and due <= old then
        code = 4
      end
      if code == 4 then
        out[#out + 1] = 4
        dues[#dues + 1] = (state == 'scheduled' and old) or -1
      else
        redis.call('HSET', KEYS[2], id, envelope)
        redis.call('HDEL', KEYS[8], id)
        redis.call('HDEL', KEYS[9], id)
        store_options(id, o, new, cap, previous.wait)
        if state == 'scheduled' then
          local at = fresh_index(id)
          if at then
            added[at] = new
          else
            redis.call('ZADD', KEYS[1], new, id)
          end
          note(id, new)
        elseif new > now then
          -- Ready, and now due later: back to waiting.
          if redis.call('ZREM', KEYS[15], id) == 0 then redis.call('LREM', KEYS[5], 1, id) end
          redis.call('HDEL', KEYS[10], id)
          redis.call('ZADD', KEYS[1], new, id)
          note(id, new)
        end
        out[#out + 1] = code
        record(code == 3 and 'debounced' or 'replaced', id)
        dues[#dues + 1] = (state == 'scheduled' or new > now) and new or -1
      end
    end
  end
end

local first = false
if created > 0 then
  -- Due times as integer text: redis.call would format each number with printf's "%.17g",
  -- the slow path of double formatting; "%d" is the integer path.
  for i = 1, n_added, 2 do added[i] = string.format('%d', added[i]) end
  redis.call('ZADD', KEYS[1], unpack(added))
  -- The queue's first jobs ever: announce the queue (see the `wake` snippet).
  first = redis.call('HINCRBY', KEYS[3], 'scheduled', string.format('%d', created)) == created
end
if with_options then redis.call('HSET', KEYS[12], 'opts', '1') end
if with_priority then redis.call('HSETNX', KEYS[12], 'prio', '1') end
-- Woken only when a job of this call is now the head: an earlier or equal due time was there
-- before, and the promoters already wait for it. The head is read as an id, not with its
-- score, which Redis would format with printf's "%.17g" (a few thousand instructions, a
-- twentieth of a one-job call); the numbers every call passes go as text for the same reason.
if earliest ~= nil and at_earliest[redis.call('ZRANGE', KEYS[1], '0', '0')[1]] then
  wake(earliest, first)
end
flush(KEYS[16], now)
for _, due in ipairs(dues) do out[#out + 1] = due end
return out
