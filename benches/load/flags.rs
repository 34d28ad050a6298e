//! The flags of the smaller benches (`web`, `cron`, `exec`): `--NAME N` pairs, N a positive
//! number. The load harness has flags of other shapes and parses its own.

use std::collections::HashMap;

/// The `--NAME N` pairs among this bench's arguments, for the names in `known`; cargo's own
/// `--bench` is skipped. Panics, naming the flag, on an unknown argument or a value that is
/// not a positive number.
pub(crate) fn numbers(known: &[&'static str]) -> HashMap<&'static str, u64> {
    let mut found = HashMap::new();
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        if arg == "--bench" {
            continue;
        }
        let Some(&name) = known.iter().find(|&&k| k == arg) else {
            panic!("unknown argument {arg:?}: use {}", known.join(", "));
        };
        let n = it
            .next()
            .and_then(|n| n.parse().ok())
            .filter(|&n: &u64| n > 0)
            .unwrap_or_else(|| panic!("{name} needs a positive number"));
        found.insert(name, n);
    }
    found
}
