//! Rate and concurrency limits per key: a job with a limit key ([`crate::NewJob::limit_key`])
//! starts only as the queue's rule for that key allows. Rules live in every partition's
//! `limits` hash (key, `prefix:*` or `*` → `RATE,PER_MS,CONCURRENCY`); `claim.lua` checks
//! them for the jobs it takes, atomically: a job that may not start goes back to `scheduled`,
//! due when the rule allows, with no attempt used, and the others of the call are claimed.
//!
//! The rate is the generic cell rate algorithm without a burst: starts of a key are at least
//! `period / N` apart, so there are never more than N in any window of one period, which is
//! how providers state their caps ("10 per second"), and the deferred job gets its exact due
//! time from one timestamp per key. A token bucket with a burst of N would allow up to 2N - 1
//! starts in a window; a sliding-window log would keep an entry per start (N per key, 10,000
//! for "10,000 a day"). The concurrency count is the key's entries in `limit_held` that are
//! still running (stale ones are dropped when counted), and `ack.lua` hands a freed slot to the
//! first job deferred on the key at once.

use std::time::Duration;

use crate::error::{Error, Result};
use crate::queue::Queue;
use crate::time::delay_ms;

/// Most bytes in a limit key or pattern.
pub const MAX_LIMIT_KEY: usize = 200;

/// A limit rule ([`Queue::set_limit`]): at most `n` starts per `per`, evenly spaced (one every
/// `per / n`, so never more than `n` in any window of `per`), and/or at most `concurrency`
/// running at once, per key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limit {
    /// At most this many starts per this long.
    pub rate: Option<(u32, Duration)>,
    /// At most this many running at once.
    pub concurrency: Option<u32>,
}

impl Limit {
    /// At most `n` starts per `per`.
    pub fn rate(n: u32, per: Duration) -> Self {
        Limit {
            rate: Some((n, per)),
            concurrency: None,
        }
    }

    /// At most `c` running at once.
    pub fn concurrency(c: u32) -> Self {
        Limit {
            rate: None,
            concurrency: Some(c),
        }
    }

    /// This rule with a concurrency limit too.
    pub fn with_concurrency(mut self, c: u32) -> Self {
        self.concurrency = Some(c);
        self
    }

    /// The stored form, `RATE,PER_MS,CONCURRENCY` (empty parts: none).
    fn encode(&self) -> Result<String> {
        let invalid = |reason: &str| Error::InvalidConfig {
            what: "limit",
            reason: reason.to_owned(),
        };
        if self.rate.is_none() && self.concurrency.is_none() {
            return Err(invalid("give a rate, a concurrency or both"));
        }
        let (n, per) = match self.rate {
            Some((n, per)) => {
                let ms = delay_ms(per)
                    .filter(|&ms| ms >= 1)
                    .ok_or_else(|| invalid("the rate's period must be from 1ms to 100 years"))?;
                if n == 0 {
                    return Err(invalid("the rate must allow at least 1 start"));
                }
                (n.to_string(), ms.to_string())
            }
            None => (String::new(), String::new()),
        };
        let c = match self.concurrency {
            Some(0) => return Err(invalid("the concurrency must be at least 1")),
            Some(c) => c.to_string(),
            None => String::new(),
        };
        Ok(format!("{n},{per},{c}"))
    }

    fn decode(text: &str) -> Option<Limit> {
        let mut parts = text.split(',');
        let (n, per, c) = (parts.next()?, parts.next()?, parts.next()?);
        let rate = match (n, per) {
            ("", "") => None,
            (n, per) => Some((n.parse().ok()?, Duration::from_millis(per.parse().ok()?))),
        };
        let concurrency = match c {
            "" => None,
            c => Some(c.parse().ok()?),
        };
        Some(Limit { rate, concurrency })
    }
}

/// Checks a rule for [`Queue::set_limit`] without Redis: its key or pattern and its limits.
///
/// # Errors
/// [`Error::InvalidConfig`].
pub fn check_limit(key: &str, limit: &Limit) -> Result<()> {
    check_key(key, true)?;
    limit.encode().map(|_| ())
}

/// Checks a job's limit key, or (`pattern`) a rule's key or pattern.
pub(crate) fn check_key(key: &str, pattern: bool) -> Result<()> {
    let bad = key.is_empty()
        || key.len() > MAX_LIMIT_KEY
        || key.contains(['\t', '\n'])
        || (pattern
            && key.contains('*')
            && !(key == "*" || (key.ends_with(":*") && !key[..key.len() - 1].contains('*'))));
    if bad {
        return Err(Error::InvalidConfig {
            what: "limit key",
            reason: format!(
                "{:?}: 1 to {MAX_LIMIT_KEY} bytes without tab or newline; a rule's key may \
                 end in \":*\" (every key with that prefix, each counted on its own) or be \"*\"",
                crate::error::clip(key)
            ),
        });
    }
    Ok(())
}

impl Queue {
    /// Sets the limit rule for `key`: a limit key (`customer:42`), a prefix pattern
    /// (`customer:*`: every key with that prefix, **each with its own** count) or `*` (every
    /// key). A job's key takes the most specific rule: its own, then the longest matching
    /// prefix, then `*`. Applies to jobs claimed from then on; a key with no rule is not
    /// limited.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for a bad key or rule; [`Error::Redis`].
    pub async fn set_limit(&self, key: &str, limit: Limit) -> Result<()> {
        check_key(key, true)?;
        let rule = limit.encode()?;
        for part in self.each_partition() {
            let keys = part.keys();
            redis::pipe()
                .atomic()
                .hset(&keys.limits, key, &rule)
                .ignore()
                .hset(&keys.meta, "limits", "1")
                .ignore()
                .query_async::<()>(&mut part.conn())
                .await
                .map_err(|e| self.redis_error("set limit", e))?;
        }
        tracing::info!(queue = %self.name(), key, ?limit, "limit set");
        Ok(())
    }

    /// Removes the limit rule for `key` (as given to [`Queue::set_limit`]); `false` when there
    /// was none. Jobs deferred by it start when their due time comes.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for a bad key; [`Error::Redis`].
    pub async fn remove_limit(&self, key: &str) -> Result<bool> {
        check_key(key, true)?;
        let mut removed = false;
        for part in self.each_partition() {
            let n: u64 = redis::cmd("HDEL")
                .arg(&part.keys().limits)
                .arg(key)
                .query_async(&mut part.conn())
                .await
                .map_err(|e| self.redis_error("remove limit", e))?;
            removed |= n > 0;
        }
        Ok(removed)
    }

    /// The queue's limit rules, by key (read from its first partition).
    ///
    /// # Errors
    /// [`Error::Redis`].
    pub async fn limits(&self) -> Result<Vec<(String, Limit)>> {
        let part = self.partition(0);
        let rules: Vec<(String, String)> = redis::cmd("HGETALL")
            .arg(&part.keys().limits)
            .query_async(&mut part.conn())
            .await
            .map_err(|e| self.redis_error("read limits", e))?;
        let mut out: Vec<(String, Limit)> = rules
            .into_iter()
            .filter_map(|(key, text)| Limit::decode(&text).map(|l| (key, l)))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// Jobs deferred by a limit so far, per limit key (summed over partitions), most first.
    ///
    /// # Errors
    /// [`Error::Redis`].
    pub async fn limit_deferrals(&self) -> Result<Vec<(String, u64)>> {
        let mut totals = std::collections::HashMap::<String, u64>::new();
        for part in self.each_partition() {
            let counts: Vec<(String, u64)> = redis::cmd("HGETALL")
                .arg(&part.keys().limit_stats)
                .query_async(&mut part.conn())
                .await
                .map_err(|e| self.redis_error("read limits", e))?;
            for (key, n) in counts {
                *totals.entry(key).or_default() += n;
            }
        }
        let mut out: Vec<(String, u64)> = totals.into_iter().collect();
        out.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_round_trip_and_bad_ones_are_refused() {
        for limit in [
            Limit::rate(10, Duration::from_secs(1)),
            Limit::concurrency(3),
            Limit::rate(5, Duration::from_secs(60)).with_concurrency(2),
        ] {
            assert_eq!(Limit::decode(&limit.encode().unwrap()), Some(limit));
        }
        assert!(Limit::default().encode().is_err());
        assert!(Limit::rate(0, Duration::from_secs(1)).encode().is_err());
        assert!(Limit::rate(1, Duration::ZERO).encode().is_err());
        assert!(Limit::concurrency(0).encode().is_err());
        for good in ["smtp", "customer:42", "customer:*", "*", "a:b:*"] {
            assert!(check_key(good, true).is_ok(), "{good}");
        }
        for bad in ["", "a*", "*:a", "a:*:*", "a\tb", "cust*:*"] {
            assert!(check_key(bad, true).is_err(), "{bad}");
        }
    }
}
