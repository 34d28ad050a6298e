//! Job ids: 26-character, time-ordered, ULID-style (48-bit millisecond timestamp, 80 random
//! bits, Crockford base32).
//!
//! Ids are made by the producer, not by Redis, so that a schedule call whose reply was lost can
//! be sent again without making a second job: the retry finds its id taken. Within one process
//! ids are strictly increasing, so jobs due in the same millisecond (which Redis orders by
//! member) run in the order they were scheduled. Across processes, same-millisecond order
//! follows the producers' clocks, which no scheduler can do better than without a shared
//! sequence.

use std::sync::Mutex;
use std::time::SystemTime;

use crate::backoff::Rng;

const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

struct State {
    last_ms: u64,
    last_random: u128,
    rng: Rng,
}

static STATE: Mutex<Option<State>> = Mutex::new(None);

/// A new job id, greater than every id this process made before.
pub(crate) fn new_id() -> String {
    let ms = crate::time::unix_ms(SystemTime::now()).unwrap_or(0) & ((1 << 48) - 1);
    // A poisoned lock only means another thread panicked mid-update; the state is still a pair
    // of integers, so keep using it.
    let mut guard = STATE.lock().unwrap_or_else(|p| p.into_inner());
    let state = guard.get_or_insert_with(|| State {
        last_ms: 0,
        last_random: 0,
        rng: Rng::from_entropy(),
    });
    let random_mask = (1u128 << 80) - 1;
    let (ms, random) = if ms <= state.last_ms && state.last_random < random_mask {
        // Same (or an earlier, if the clock stepped back) millisecond: count up from the last id.
        (state.last_ms, state.last_random + 1)
    } else {
        let hi = u128::from(state.rng.next_u64() & 0xffff);
        let lo = u128::from(state.rng.next_u64());
        (ms.max(state.last_ms), (hi << 64) | lo)
    };
    state.last_ms = ms;
    state.last_random = random;
    drop(guard);
    encode(ms, random)
}

/// The creation time (unix ms) in an id made by [`new_id`], alone or with a partition key
/// (`<id>{key}`); `None` for any other id.
pub(crate) fn time_ms(id: &str) -> Option<u64> {
    let bytes = id.as_bytes();
    let ulid = bytes.get(..26)?;
    if bytes.len() > 26 && bytes[26] != b'{' {
        return None;
    }
    let mut value: u128 = 0;
    for (i, &c) in ulid.iter().enumerate() {
        let digit = ALPHABET.iter().position(|&a| a == c)?;
        // 26 base-32 digits hold 130 bits: an id made here has the top two clear.
        if i == 0 && digit >= 8 {
            return None;
        }
        value = (value << 5) | digit as u128;
    }
    u64::try_from(value >> 80).ok()
}

fn encode(ms: u64, random: u128) -> String {
    let value = (u128::from(ms) << 80) | random;
    (0..26)
        .rev()
        .map(|i| ALPHABET[((value >> (5 * i)) & 31) as usize] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_26_chars_and_strictly_increasing() {
        let ids: Vec<String> = (0..10_000).map(|_| new_id()).collect();
        for pair in ids.windows(2) {
            assert!(pair[0] < pair[1], "{} !< {}", pair[0], pair[1]);
        }
        assert!(ids.iter().all(|id| id.len() == 26));
    }

    #[test]
    fn the_time_is_read_back_from_a_generated_id() {
        let id = encode(1_763_740_800_123, 0xdead_beef);
        assert_eq!(time_ms(&id), Some(1_763_740_800_123));
        assert_eq!(time_ms(&format!("{id}{{user-7}}")), Some(1_763_740_800_123));
        let now = crate::time::unix_ms(SystemTime::now()).unwrap();
        let made = time_ms(&new_id()).unwrap();
        assert!(made.abs_diff(now) < 60_000, "{made} vs {now}");
        for other in [
            String::new(),
            "order-42".to_owned(),
            id[..25].to_owned(),
            format!("{id}x"),
            format!("{id}:undo"),
            format!("{{{id}}}:undo"),
            "ZZZZZZZZZZZZZZZZZZZZZZZZZZ".to_owned(), // more than 128 bits
            "000000000000000000000000IU".to_owned(), // not Crockford base32
        ] {
            assert_eq!(time_ms(&other), None, "{other}");
        }
    }

    #[test]
    fn encoding_puts_time_first() {
        assert_eq!(encode(0, 0), "00000000000000000000000000");
        assert!(encode(1, 0) > encode(0, (1 << 80) - 1));
    }
}
