//! Raw-Redis baselines: the least any delayed queue on this Redis must do, measured in the same
//! run as punctual so that every punctual figure can be given as a share of it.
//!
//! - One-at-a-time and pipelined `ZADD` of a member holding id and payload (the smallest
//!   possible delayed queue: one sorted set, nothing else).
//! - A minimal Lua move: due ids from a sorted set to a list, a batch per call, with or without
//!   a consumer popping the list (`BLMPOP ... COUNT 100`).

use redis::aio::MultiplexedConnection;

use crate::{connect, used_memory, Clock, Measured, BATCH, N_PIPELINE};

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
    let script = redis::Script::new(MOVE_LUA);
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
    loop {
        let moved: usize = script
            .key("base:due")
            .key("base:ready")
            .arg(BATCH)
            .invoke_async(&mut conn)
            .await
            .expect("move script");
        if moved < BATCH {
            break;
        }
    }
    if let Some(consumer) = consumer {
        consumer.await.expect("consumer task");
    }
    clock.stop(&mut conn, n).await
}
