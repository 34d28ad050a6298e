"""Drives punctual's scripts against a redis-server that runs under callgrind (cost.sh), with
callgrind's counters zeroed before the measured loop and dumped after it, so the dump holds
the scripts' cost alone.

    drive.py PORT LUA_DIR N BATCH WINDOW_MS [WHAT]

WHAT is `claim+ack` (default): N jobs in `ready`, each claimed BATCH at a time and
acknowledged; `schedule`: N jobs scheduled BATCH per call, due 60-120 s ahead, as W1's bulk;
`promote`: BATCH jobs, each due at its own millisecond, become due and one promote.lua call
(the promoter's batch of 1,000) moves them, N / BATCH times; or
`promote-burst`: the same, the BATCH jobs of each call due at one instant (W2's shape).
"""
import subprocess
import sys

import redis

port, lua_dir, n, batch, window = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:6])
what = sys.argv[6] if len(sys.argv) > 6 else "claim+ack"
r = redis.Redis(port=int(port))


def key(part):
    return f"punctual:{{cost}}:{part}"


# The keys in the order of each script's header (src/ops/claim.rs, src/ops/ack.rs).
CLAIM = "ready running jobs attempts leases seq due meta dead errors opts stats ranked bell \
scheduled events limits limit_tat limit_held limit_wait limit_stats".split()
SCHEDULE = "scheduled jobs stats done ready running dead attempts errors due opts meta completed \
results ranked events".split()
PROMOTE = "scheduled ready running leases attempts errors stats meta due dead jobs opts ranked bell \
events".split()
ACK = "running leases jobs attempts errors stats done opts completed results meta events \
limit_held limit_wait scheduled ready bell".split()
claim = r.register_script(open(f"{lua_dir}/claim.lua").read())
ack = r.register_script(open(f"{lua_dir}/ack.lua").read())

# An envelope of 100 B of data with a 7-letter kind, as W1-W4 store it.
envelope = b"\x82\xa1k\xa7Payload\xa1d\xc4\x64" + b"x" * 100
pipe = r.pipeline(transaction=False)
for i in range(n + 1):
    job = f"01KAKJ9N33{i:016d}"
    pipe.hset(key("jobs"), job, envelope)
    pipe.rpush(key("ready"), job)
pipe.execute()
claim_keys, ack_keys = [key(p) for p in CLAIM], [key(p) for p in ACK]
wake = key("wake")


def claim_ack(want):
    out = claim(keys=claim_keys, args=[want, 30000, 0, wake])
    jobs = out[3:]
    args = [window, key("ended"), ""]
    for j in range(0, len(jobs), 5):
        args += [jobs[j], jobs[j + 1]]
    assert all(applied == 1 for applied in ack(keys=ack_keys, args=args))
    return len(jobs) // 5


def schedule_batch(first, count):
    args = [key("wake"), -1, count]
    for i in range(first, first + count):
        args += [f"01KAKJ9N34{i:016d}", "in", 60000 + i % 60000, envelope, ""]
    assert all(created == 1 for created in schedule(keys=schedule_keys, args=args)[1:count + 1])


if what in ("promote", "promote-burst"):
    # BATCH jobs become due, then one promote.lua call (batch 1000, as the promoter's) moves
    # them, N / BATCH times. The same loop without the promote calls (its jobs deleted as they
    # are added) runs first and is dumped on its own: cost.sh takes its count off.
    promote = r.register_script(open(f"{lua_dir}/promote.lua").read())
    promote_keys = [key(p) for p in PROMOTE]
    r.delete(key("ready"))
    args = [1000, 1, key("ended")]
    promote(keys=promote_keys, args=args)  # loads the script
    now_ms = int(r.time()[0]) * 1000

    def add(first, target):
        pipe = r.pipeline(transaction=False)
        for i in range(first, min(first + batch, n)):
            due = now_ms - 100000 + (i if what == "promote" else first)
            pipe.zadd(target, {f"01KAKJ9N33{i:016d}": due})
        pipe.execute()

    subprocess.run(["callgrind_control", "-z"], check=True, capture_output=True)
    for first in range(0, n, batch):
        add(first, key("unpromoted"))
        r.delete(key("unpromoted"))
    subprocess.run(["callgrind_control", "-d"], check=True, capture_output=True)
    for first in range(0, n, batch):
        add(first, key("scheduled"))
        r.delete(key("unpromoted"))
        assert promote(keys=promote_keys, args=args)[1] == min(batch, n - first)
elif what == "schedule":
    schedule = r.register_script(open(f"{lua_dir}/schedule.lua").read())
    schedule_keys = [key(p) for p in SCHEDULE]
    schedule_batch(n + 1, 1)  # loads the script
    subprocess.run(["callgrind_control", "-z"], check=True, capture_output=True)
    for first in range(0, n, batch):
        schedule_batch(first, min(batch, n - first))
else:
    claim_ack(1)  # loads both scripts
    subprocess.run(["callgrind_control", "-z"], check=True, capture_output=True)
    done = 0
    while done < n:
        done += claim_ack(min(batch, n - done))
subprocess.run(["callgrind_control", "-d"], check=True, capture_output=True)
