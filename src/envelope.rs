//! The stored form of a job: a versioned MessagePack envelope around the caller's data.
//!
//! The envelope is a MessagePack map with short field names (it is stored once per job, so every
//! byte counts): `k` kind, `d` the data (itself MessagePack with named fields, as `bin`), and
//! the optional `v` format version (absent = 1), `c` creation time (unix ms, producer clock,
//! informational only; absent = the time in a generated id, which is when it was made), per-job
//! `m` max attempts, `b` backoff, `t` handler timeout (ms) and `p` priority (-9..=9, absent = 0;
//! first in the map when present, where `promote.lua` reads it). Unknown fields are ignored, so
//! a later version can add fields that this one skips.
//!
//! Leaving out `v` and, for generated ids, `c` saves 14 bytes a job: with 100 B of data that
//! keeps the stored envelope (115 B with a 7-letter kind) in Redis's 128-byte allocation class
//! rather than the 160-byte one (BENCHMARKS.md, W1 memory).

use serde::{Deserialize, Serialize};

use crate::backoff::BackoffSpec;

/// The envelope format this build writes and reads.
pub(crate) const ENVELOPE_VERSION: u32 = 1;

/// A job as stored in the `jobs` hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Envelope {
    /// The job's priority (`NewJob::priority`), written only when not 0, and always as the
    /// map's *first* field: `promote.lua` reads it from the envelope's first bytes (`8N a1 70
    /// <fixint>`) without decoding the rest (Redis's Lua MessagePack cannot read `bin`).
    #[serde(rename = "p", default, skip_serializing_if = "Option::is_none")]
    pub(crate) priority: Option<i8>,
    /// Written only when not 1.
    #[serde(
        rename = "v",
        default = "version_one",
        skip_serializing_if = "is_version_one"
    )]
    pub(crate) version: u32,
    #[serde(rename = "k")]
    pub(crate) kind: String,
    #[serde(rename = "d", with = "serde_bytes")]
    pub(crate) data: Vec<u8>,
    /// Written only when the id does not carry it (see [`Envelope::created_ms`]).
    #[serde(rename = "c", default, skip_serializing_if = "Option::is_none")]
    pub(crate) created_ms: Option<u64>,
    #[serde(rename = "m", default, skip_serializing_if = "Option::is_none")]
    pub(crate) max_attempts: Option<u32>,
    #[serde(rename = "b", default, skip_serializing_if = "Option::is_none")]
    pub(crate) backoff: Option<BackoffSpec>,
    /// The job's own handler timeout, ms (`NewJob::timeout`).
    #[serde(rename = "t", default, skip_serializing_if = "Option::is_none")]
    pub(crate) timeout_ms: Option<u64>,
}

fn version_one() -> u32 {
    1
}

fn is_version_one(version: &u32) -> bool {
    *version == 1
}

impl Envelope {
    /// When job `id` was made (unix ms, its producer's clock): the envelope's `c`, or else the
    /// time in a generated id; `None` when neither says (a foreign producer that left `c` out
    /// of a job with its own id).
    pub(crate) fn created_ms(&self, id: &str) -> Option<u64> {
        self.created_ms.or_else(|| crate::id::time_ms(id))
    }

    /// Encodes the envelope (infallible for this struct's field types, but kept as a Result so
    /// that no panic path exists).
    pub(crate) fn encode(&self) -> Result<Vec<u8>, rmp_serde::encode::Error> {
        rmp_serde::to_vec_named(self)
    }

    /// Decodes an envelope, refusing versions this build does not know. The error is a
    /// human-readable reason; the caller adds queue and job id.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, String> {
        let envelope: Envelope =
            rmp_serde::from_slice(bytes).map_err(|e| format!("invalid envelope: {e}"))?;
        if envelope.version != ENVELOPE_VERSION {
            return Err(format!(
                "envelope version {} is not supported (this punctual reads version {ENVELOPE_VERSION})",
                envelope.version
            ));
        }
        Ok(envelope)
    }
}

/// What is kept with a completed job (`results` hash values): a MessagePack map `t` run time
/// (ms, the worker's clock from claim to ack), and the optional `r` result (MessagePack, as
/// `bin`) and `n` a note (why a result was not kept).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Completion {
    #[serde(rename = "t")]
    pub(crate) run_ms: u64,
    #[serde(
        rename = "r",
        default,
        skip_serializing_if = "Option::is_none",
        with = "serde_bytes"
    )]
    pub(crate) result: Option<Vec<u8>>,
    #[serde(rename = "n", default, skip_serializing_if = "Option::is_none")]
    pub(crate) note: Option<String>,
}

impl Completion {
    /// Encodes the record (infallible for these field types; an empty record if not).
    pub(crate) fn encode(&self) -> Vec<u8> {
        rmp_serde::to_vec_named(self).unwrap_or_default()
    }

    /// Decodes a record; `None` when it does not decode.
    pub(crate) fn decode(bytes: &[u8]) -> Option<Self> {
        rmp_serde::from_slice(bytes).ok()
    }
}

/// Encodes job data as MessagePack with named fields, so that fields can be added to or
/// reordered in a job struct without breaking jobs already stored.
pub(crate) fn encode_data<T: Serialize + ?Sized>(
    data: &T,
) -> Result<Vec<u8>, rmp_serde::encode::Error> {
    rmp_serde::to_vec_named(data)
}

/// Decodes job data; the error is a human-readable reason.
pub(crate) fn decode_data<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    rmp_serde::from_slice(bytes).map_err(|e| format!("invalid job data: {e}"))
}

/// Bytes as lowercase hex: how a stored envelope travels inside JSON (a compensation, a
/// recurring schedule's occurrence).
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The bytes of lowercase or uppercase hex `text`; `None` if it is not hex.
pub(crate) fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Envelope {
        Envelope {
            version: ENVELOPE_VERSION,
            kind: "email".into(),
            data: encode_data(&("hello", 42)).unwrap(),
            created_ms: Some(1_763_740_800_000),
            max_attempts: Some(3),
            backoff: Some(BackoffSpec::Fixed { delay_ms: 250 }),
            timeout_ms: None,
            priority: None,
        }
    }

    /// `promote.lua` reads a priority from the envelope's first four bytes: `p` must come
    /// first, as a fixint.
    #[test]
    fn priority_is_the_first_field() {
        for (p, byte) in [(9i8, 0x09u8), (-2, 0xfe), (-9, 0xf7)] {
            let e = Envelope {
                priority: Some(p),
                ..sample()
            };
            let bytes = e.encode().unwrap();
            assert_eq!(bytes[1..4], [0xa1, b'p', byte], "priority {p}");
            assert_eq!(Envelope::decode(&bytes).unwrap(), e);
        }
        assert_ne!(sample().encode().unwrap()[2], b'p');
    }

    #[test]
    fn envelope_round_trips() {
        let e = sample();
        let bytes = e.encode().unwrap();
        assert_eq!(Envelope::decode(&bytes).unwrap(), e);
    }

    #[test]
    fn payload_is_stored_as_bin_not_an_int_array() {
        let mut e = sample();
        e.data = vec![0xff; 100];
        e.max_attempts = None;
        e.backoff = None;
        let bytes = e.encode().unwrap();
        // 100 data bytes plus a small header, not 200 (0xff as an int costs 2 bytes).
        assert!(bytes.len() < 140, "envelope is {} bytes", bytes.len());
    }

    /// A job with a generated id and defaults leaves `v` and `c` out: with 100 B of data and a
    /// 7-letter kind the envelope is 115 B, inside Redis's 128-byte allocation class (its
    /// string adds 4 bytes of header and terminator).
    #[test]
    fn defaults_are_left_out() {
        let e = Envelope {
            version: ENVELOPE_VERSION,
            kind: "Payload".into(),
            data: vec![0xff; 100],
            created_ms: None,
            max_attempts: None,
            backoff: None,
            timeout_ms: None,
            priority: None,
        };
        let bytes = e.encode().unwrap();
        assert_eq!(bytes.len(), 115);
        assert_eq!(bytes[0], 0x82, "a map of two fields: k and d");
        assert_eq!(Envelope::decode(&bytes).unwrap(), e);
        assert_eq!(
            e.created_ms("01KAKJ9N330000000000000000"),
            Some(1_763_740_800_099)
        );
        assert_eq!(e.created_ms("order-42"), None);
        let with_time = Envelope {
            created_ms: Some(5),
            ..e
        };
        assert_eq!(with_time.created_ms("01KAKJ9N330000000000000000"), Some(5));
    }

    /// What producers wrote before `v` and `c` became optional, and what the documented
    /// protocol still lets any producer write, reads the same.
    #[test]
    fn envelopes_with_every_field_still_decode() {
        #[derive(Serialize)]
        struct Full<'a> {
            v: u32,
            k: &'a str,
            #[serde(with = "serde_bytes")]
            d: &'a [u8],
            c: u64,
        }
        let bytes = rmp_serde::to_vec_named(&Full {
            v: 1,
            k: "email",
            d: b"\x90",
            c: 1_763_740_800_000,
        })
        .unwrap();
        let e = Envelope::decode(&bytes).unwrap();
        assert_eq!(e.version, 1);
        assert_eq!(e.kind, "email");
        assert_eq!(e.created_ms, Some(1_763_740_800_000));
        assert_eq!(e.created_ms("anything"), Some(1_763_740_800_000));
    }

    mod fuzz {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(10_000))]

            /// Any bytes at all: decoding returns Ok or a reason, never panics.
            #[test]
            fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
                let _ = Envelope::decode(&bytes);
                let _ = decode_data::<(String, u64)>(&bytes);
            }

            /// A valid envelope cut short or with bytes overwritten: the near-misses a
            /// truncated write or a foreign producer make. Never a panic; a cut envelope is
            /// always refused.
            #[test]
            fn damaged_envelopes_never_panic(
                cut in any::<prop::sample::Index>(),
                edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8)
            ) {
                let bytes = sample().encode().unwrap();
                let short = &bytes[..cut.index(bytes.len())];
                prop_assert!(Envelope::decode(short).is_err());
                let mut damaged = bytes.clone();
                for (at, byte) in edits {
                    let i = at.index(damaged.len());
                    damaged[i] = byte;
                }
                if let Ok(e) = Envelope::decode(&damaged) {
                    prop_assert_eq!(e.version, ENVELOPE_VERSION);
                }
            }
        }
    }

    #[test]
    fn garbage_and_future_versions_are_refused_without_panic() {
        for bytes in [&b""[..], b"\xc1", b"not msgpack at all", &[0x93, 1, 2, 3]] {
            assert!(Envelope::decode(bytes).is_err());
        }
        let mut e = sample();
        e.version = 99;
        let err = Envelope::decode(&e.encode().unwrap()).unwrap_err();
        assert!(err.contains("version 99"), "{err}");
    }
}
