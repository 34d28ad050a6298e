//! Raw-Redis baselines: the least any delayed queue on this Redis must do, measured in the same
//! run as punctual so that every punctual figure can be given as a share of it.
//!
//! - One-at-a-time and pipelined `ZADD` of a member holding id and payload (the smallest
//!   possible delayed queue: one sorted set, nothing else).
//! - A minimal Lua move: due ids from a sorted set to a list, a batch per call, with or without
//!   a consumer popping the list (`BLMPOP ... COUNT 100`).
//! - A reliable drain (claim into a running set, ack) and W3's raw counterpart: jobs due at a
//!   steady rate, moved on time and taken by reliable consumers, with their lateness.

use redis::aio::MultiplexedConnection;

use crate::workloads::{Lateness, PRODUCER_LEAD_MS, PRODUCER_SLICE_MS};
use crate::{connect, unix_us, used_memory, Clock, Measured, BATCH, N_PIPELINE};

/// The smallest move script: no lease, no counters, no reply beyond the count.
const MOVE_LUA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ids = redis.call('ZRANGE', KEYS[1], '-inf', now, 'BYSCORE', 'LIMIT', 0, tonumber(ARGV[1]))
if #ids > 0 then
  redis.call('ZREM', KEYS[1], unpack(ids))
  redis.call('RPUSH', KEYS[2], unpack(ids))
end
return #ids
";

/// Moves every due id of `base:due` to `base:ready` with [`MOVE_LUA`], [`BATCH`] per call.
async fn move_all(conn: &mut MultiplexedConnection) {
    let script = redis::Script::new(MOVE_LUA);
    loop {
        let moved: usize = script
            .key("base:due")
            .key("base:ready")
            .arg(BATCH)
            .invoke_async(conn)
            .await
            .expect("move script");
        if moved < BATCH {
            break;
        }
    }
}

/// A member of `len` bytes for job `i`: the id first, then filler standing in for the payload.
fn member(i: usize, len: usize) -> Vec<u8> {
    let mut m = format!("{i:026}").into_bytes();
    m.resize(len, b'x');
    m
}

/// `n` ZADDs, each awaited before the next is sent.
pub(crate) async fn zadd_one_at_a_time(
    conn: &mut MultiplexedConnection,
    n: usize,
    member_len: usize,
    part: usize,
) -> Measured {
    let clock = Clock::start(conn).await;
    for i in part * n..(part + 1) * n {
        let score = 1_000_000 + (i % 60_000) as u64;
        let _: i64 = redis::cmd("ZADD")
            .arg("base:sched")
            .arg(score)
            .arg(member(i, member_len))
            .query_async(conn)
            .await
            .expect("ZADD");
    }
    clock.stop(conn, n).await
}

/// `n` ZADDs sent in pipelines of [`N_PIPELINE`] commands, one pipeline in flight at a time.
/// Also returns the growth of `used_memory` per job.
pub(crate) async fn zadd_pipelined(
    conn: &mut MultiplexedConnection,
    n: usize,
    member_len: usize,
) -> (Measured, f64) {
    let before = used_memory(conn).await;
    let clock = Clock::start(conn).await;
    let mut i = 0;
    while i < n {
        let mut pipe = redis::pipe();
        for j in i..(i + N_PIPELINE).min(n) {
            let score = 1_000_000 + (j % 60_000) as u64;
            pipe.cmd("ZADD")
                .arg("base:sched")
                .arg(score)
                .arg(member(j, member_len))
                .ignore();
        }
        let () = pipe.query_async(conn).await.expect("pipelined ZADD");
        i += N_PIPELINE;
    }
    let measured = clock.stop(conn, n).await;
    let after = used_memory(conn).await;
    (measured, (after - before) as f64 / n as f64)
}

/// Moves `n` due ids with [`MOVE_LUA`], [`BATCH`] per call. With `consume`, a consumer on its
/// own connection pops the list concurrently and the clock stops when it has all `n`; without,
/// it stops when the list holds all `n`.
pub(crate) async fn lua_move(url: &str, n: usize, consume: bool) -> Measured {
    let mut conn = connect(url).await;
    let mut i = 0;
    while i < n {
        let mut pipe = redis::pipe();
        for j in i..(i + N_PIPELINE).min(n) {
            pipe.cmd("ZADD")
                .arg("base:due")
                .arg(0)
                .arg(member(j, 26))
                .ignore();
        }
        let () = pipe.query_async(&mut conn).await.expect("ZADD due ids");
        i += N_PIPELINE;
    }
    let consumer = consume.then(|| {
        let url = url.to_owned();
        tokio::spawn(async move {
            let mut conn = connect(&url).await;
            let mut got = 0;
            while got < n {
                let popped: Option<(String, Vec<Vec<u8>>)> = redis::cmd("BLMPOP")
                    .arg(5)
                    .arg(1)
                    .arg("base:ready")
                    .arg("LEFT")
                    .arg("COUNT")
                    .arg(100)
                    .query_async(&mut conn)
                    .await
                    .expect("BLMPOP");
                got += popped.map_or(0, |(_, ids)| ids.len());
            }
        })
    });
    let clock = Clock::start(&mut conn).await;
    move_all(&mut conn).await;
    if let Some(consumer) = consumer {
        consumer.await.expect("consumer task");
    }
    clock.stop(&mut conn, n).await
}

/// The least a *reliable* consumer must do per batch: take ids from the ready list, give
/// each a lease deadline in a running set, and read their data, in one script; then, once
/// handled, drop them from the running set and their data. No attempts, no counters, no
/// fencing: the floor under any queue that survives a consumer's crash.
const CLAIM_LUA: &str = r"
local ids = redis.call('LPOP', KEYS[1], tonumber(ARGV[1]))
if not ids then return {{}, {}} end
local t = redis.call('TIME')
local deadline = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + 30000
local zargs = {}
for i, id in ipairs(ids) do
  zargs[2 * i - 1] = deadline
  zargs[2 * i] = id
end
redis.call('ZADD', KEYS[2], unpack(zargs))
return {ids, redis.call('HMGET', KEYS[3], unpack(ids))}
";

const ACK_LUA: &str = r"
redis.call('ZREM', KEYS[1], unpack(ARGV))
return redis.call('HDEL', KEYS[2], unpack(ARGV))
";

/// Consumers of the reliable baseline, each on its own connection.
pub(crate) const RELIABLE_CONSUMERS: usize = 4;
/// Ids per claim of the reliable baseline.
pub(crate) const RELIABLE_BATCH: usize = 100;

/// `n` due jobs with `payload`-byte data moved with [`MOVE_LUA`] ([`BATCH`] per call) while
/// [`RELIABLE_CONSUMERS`] consumers claim ([`CLAIM_LUA`], [`RELIABLE_BATCH`] at a time) and
/// acknowledge ([`ACK_LUA`]) them; the clock stops when all `n` are acknowledged. The
/// reliable raw limit that W2's end-to-end figure is compared with.
pub(crate) async fn reliable_drain(url: &str, n: usize, payload: usize) -> Measured {
    let mut conn = connect(url).await;
    let data = vec![b'x'; payload];
    let mut i = 0;
    while i < n {
        let mut pipe = redis::pipe();
        for j in i..(i + N_PIPELINE).min(n) {
            let id = format!("{j:026}");
            pipe.cmd("ZADD").arg("base:due").arg(0).arg(&id).ignore();
            pipe.cmd("HSET")
                .arg("base:data")
                .arg(&id)
                .arg(&data)
                .ignore();
        }
        let () = pipe.query_async(&mut conn).await.expect("load the backlog");
        i += N_PIPELINE;
    }
    let acked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let clock = Clock::start(&mut conn).await;
    let consumers: Vec<_> = (0..RELIABLE_CONSUMERS)
        .map(|_| {
            let (url, acked) = (url.to_owned(), acked.clone());
            tokio::spawn(async move {
                let mut conn = connect(&url).await;
                let (claim, ack) = (redis::Script::new(CLAIM_LUA), redis::Script::new(ACK_LUA));
                while acked.load(std::sync::atomic::Ordering::Relaxed) < n {
                    let (ids, data): (Vec<String>, Vec<Option<Vec<u8>>>) = claim
                        .key("base:ready")
                        .key("base:running")
                        .key("base:data")
                        .arg(RELIABLE_BATCH)
                        .invoke_async(&mut conn)
                        .await
                        .expect("claim script");
                    if ids.is_empty() {
                        tokio::time::sleep(std::time::Duration::from_micros(200)).await;
                        continue;
                    }
                    assert!(
                        data.iter().all(Option::is_some),
                        "every claimed job has data"
                    );
                    let mut call = ack.key("base:running");
                    call.key("base:data");
                    for id in &ids {
                        call.arg(id);
                    }
                    let removed: usize = call.invoke_async(&mut conn).await.expect("ack script");
                    acked.fetch_add(removed, std::sync::atomic::Ordering::Relaxed);
                }
            })
        })
        .collect();
    move_all(&mut conn).await;
    for consumer in consumers {
        consumer.await.expect("consumer task");
    }
    clock.stop(&mut conn, n).await
}

/// Consumers of the raw lateness baseline, each on its own connection.
pub(crate) const LATENESS_CONSUMERS: usize = 8;
/// The longest the raw promoter sleeps without looking at the next due time.
const PROMOTER_NAP_MS: u64 = 10;

/// Sleeps `wait` with punctual's promoter's own sleep (src/sleep.rs: tokio's millisecond
/// timer, then a `timerfd` for the last 2 ms). The raw limit sleeps no less precisely than
/// punctual, or it would carry lateness that is the timer's, not Redis's.
async fn precise_sleep(wait: std::time::Duration) {
    punctual::bench_support::sleep_until(tokio::time::Instant::now() + wait).await;
}

/// W3's raw counterpart, at the same `rate` and for the same `secs`: a producer writes each
/// 100 ms slice of jobs 2 s ahead (`ZADD` + `HSET` of 100 B, pipelined), as W3's does; one
/// promoter moves due ids with [`MOVE_LUA`] and otherwise sleeps until the next due time
/// (`ZRANGE ... WITHSCORES LIMIT 1`, looked at again at least every [`PROMOTER_NAP_MS`];
/// [`precise_sleep`]);
/// [`LATENESS_CONSUMERS`] consumers follow Redis's reliable-queue pattern: `BLMOVE` ready →
/// their own processing list, `HGET` the data, then the lateness (now minus due time), then
/// `LREM` + `HDEL` in one round trip. No attempts, no leases, no counters: the least work
/// that keeps a job through a consumer's crash and starts it on time.
pub(crate) async fn reliable_lateness(url: &str, rate: u64, secs: u64) -> Lateness {
    use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
    use std::sync::{Arc, Mutex};

    let total = (rate * secs) as usize;
    let taken = Arc::new(AtomicUsize::new(0));
    let samples = Arc::new(Mutex::new(Vec::with_capacity(total)));
    let consumers: Vec<_> = (0..LATENESS_CONSUMERS)
        .map(|c| {
            let (url, taken, samples) = (url.to_owned(), taken.clone(), samples.clone());
            tokio::spawn(async move {
                let mut conn = connect(&url).await;
                let processing = format!("base:processing:{c}");
                while taken.load(Relaxed) < total {
                    let id: Option<String> = redis::cmd("BLMOVE")
                        .arg("base:ready")
                        .arg(&processing)
                        .arg("LEFT")
                        .arg("RIGHT")
                        .arg(0.1)
                        .query_async(&mut conn)
                        .await
                        .expect("BLMOVE");
                    let Some(id) = id else { continue };
                    let data: Option<Vec<u8>> = redis::cmd("HGET")
                        .arg("base:data")
                        .arg(&id)
                        .query_async(&mut conn)
                        .await
                        .expect("HGET");
                    let due_ms: i64 = id[..13].parse().expect("the id starts with the due time");
                    let late = unix_us() - due_ms * 1000;
                    assert!(data.is_some(), "every job has its data");
                    samples.lock().unwrap_or_else(|p| p.into_inner()).push(late);
                    taken.fetch_add(1, Relaxed);
                    let () = redis::pipe()
                        .cmd("LREM")
                        .arg(&processing)
                        .arg(1)
                        .arg(&id)
                        .ignore()
                        .cmd("HDEL")
                        .arg("base:data")
                        .arg(&id)
                        .ignore()
                        .query_async(&mut conn)
                        .await
                        .expect("ack");
                }
            })
        })
        .collect();
    let promoter = {
        let (url, taken) = (url.to_owned(), taken.clone());
        tokio::spawn(async move {
            let mut conn = connect(&url).await;
            let script = redis::Script::new(MOVE_LUA);
            while taken.load(Relaxed) < total {
                let moved: usize = script
                    .key("base:due")
                    .key("base:ready")
                    .arg(BATCH)
                    .invoke_async(&mut conn)
                    .await
                    .expect("move script");
                if moved == BATCH {
                    continue;
                }
                let next: Vec<(String, f64)> = redis::cmd("ZRANGE")
                    .arg("base:due")
                    .arg(0)
                    .arg(0)
                    .arg("WITHSCORES")
                    .query_async(&mut conn)
                    .await
                    .expect("ZRANGE");
                let nap_us = next
                    .first()
                    .map_or(PROMOTER_NAP_MS as i64 * 1000, |(_, due)| {
                        (*due as i64 * 1000 - unix_us()).clamp(0, PROMOTER_NAP_MS as i64 * 1000)
                    });
                if nap_us > 0 {
                    precise_sleep(std::time::Duration::from_micros(nap_us as u64)).await;
                }
            }
        })
    };

    let mut conn = connect(url).await;
    let payload = vec![b'x'; crate::PAYLOAD_BYTES];
    let start = unix_us() as u64 / 1000 + PRODUCER_LEAD_MS;
    let due_of = |i: u64| start + i * 1000 / rate;
    let per_slice = rate * PRODUCER_SLICE_MS / 1000;
    let mut next = 0u64;
    while next < total as u64 {
        let slice = next..(next + per_slice).min(total as u64);
        let first_due = due_of(slice.start);
        let wait = (first_due.saturating_sub(PRODUCER_LEAD_MS) as i64 - unix_us() / 1000).max(0);
        tokio::time::sleep(std::time::Duration::from_millis(wait as u64)).await;
        let mut pipe = redis::pipe();
        for i in slice.clone() {
            let due = due_of(i);
            let id = format!("{due:013}{i:013}");
            pipe.cmd("HSET")
                .arg("base:data")
                .arg(&id)
                .arg(&payload)
                .ignore();
            pipe.cmd("ZADD").arg("base:due").arg(due).arg(&id).ignore();
        }
        let () = pipe.query_async(&mut conn).await.expect("produce a slice");
        next = slice.end;
    }
    tokio::time::timeout(std::time::Duration::from_secs(secs + 60), async {
        for consumer in consumers {
            consumer.await.expect("consumer task");
        }
    })
    .await
    .expect("every raw W3 job ran in time");
    promoter.await.expect("promoter task");
    let mut sorted = samples.lock().unwrap_or_else(|p| p.into_inner()).clone();
    assert_eq!(sorted.len(), total, "every job ran exactly once");
    sorted.sort_unstable();
    Lateness::of(sorted)
}
