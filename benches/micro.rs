//! Micro-benchmarks (criterion) of the per-job work done in the client: the envelope a job is
//! stored in, and the retry backoff computed after a failure.
//!
//! `cargo bench --bench micro`

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use punctual::bench_support::{decode_envelope, encode_envelope};
use punctual::{Backoff, BackoffSpec, Exponential, NewJob, Rng};
use serde::{Deserialize, Serialize};

/// The load benchmark's job data: 100 bytes as MessagePack.
#[derive(Serialize, Deserialize)]
struct Payload {
    due: u64,
    #[serde(with = "serde_bytes")]
    pad: Vec<u8>,
}

fn payload() -> Payload {
    Payload {
        due: 1_763_740_800_000,
        pad: vec![b'x'; 80],
    }
}

fn envelope(c: &mut Criterion) {
    let data = rmp_serde::to_vec_named(&payload()).expect("encode");
    assert_eq!(data.len(), 100, "the payload is 100 bytes");
    let stored = encode_envelope("Payload", data.clone());
    c.bench_function("job data encode (NewJob::new, 100 B)", |b| {
        b.iter(|| NewJob::new(black_box(&payload())))
    });
    c.bench_function("envelope encode (100 B data)", |b| {
        b.iter(|| encode_envelope(black_box("Payload"), black_box(data.clone())))
    });
    c.bench_function("envelope decode (100 B data)", |b| {
        b.iter(|| decode_envelope(black_box(&stored)))
    });
    c.bench_function("envelope decode, garbage refused", |b| {
        b.iter(|| decode_envelope(black_box(b"\x93\x01\x02 not an envelope")))
    });
}

fn backoff(c: &mut Criterion) {
    let exponential = Exponential::default();
    let mut rng = Rng::seeded(7);
    c.bench_function("backoff exponential, attempt 3", |b| {
        b.iter(|| exponential.delay(black_box(3), &mut rng))
    });
    c.bench_function("backoff exponential, attempt 1000 (capped)", |b| {
        b.iter(|| exponential.delay(black_box(1000), &mut rng))
    });
    let spec = BackoffSpec::from(
        punctual::Fixed::new(Duration::from_millis(250)).expect("valid fixed backoff"),
    );
    c.bench_function("backoff per-job spec (fixed)", |b| {
        b.iter(|| spec.delay(black_box(5), &mut rng))
    });
}

criterion_group!(benches, envelope, backoff);
criterion_main!(benches);
