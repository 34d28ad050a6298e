//! How a queue handle is set up: [`QueueConfig`] (timeouts, limits, the dedup window, the key
//! prefix), [`TlsConfig`] for `rediss://`, and their documented defaults. Validated by
//! [`QueueConfig::validate`] when a namespace connects.

use std::time::Duration;

use crate::error::{Error, Result};
use crate::keys::DEFAULT_PREFIX;
use crate::time::delay_ms;

/// The storage format this build reads and writes, kept in `p:{q}:meta` field `format`.
pub const STORAGE_FORMAT: u32 = 1;

/// Default for [`QueueConfig::set_max_payload_bytes`]: 1 MiB.
pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 1024 * 1024;
/// Default for [`QueueConfig::set_past_tolerance`]: 60 s.
pub const DEFAULT_PAST_TOLERANCE: Duration = Duration::from_secs(60);
/// Default for [`QueueConfig::set_response_timeout`]: 5 s.
pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Default for [`QueueConfig::set_dedup_window`]: 60 s.
pub const DEFAULT_DEDUP_WINDOW: Duration = Duration::from_secs(60);
/// Default for [`QueueConfig::set_connect_timeout`]: 2 s.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Settings of a queue handle. Every setting has a documented default.
#[derive(Debug, Clone)]
pub struct QueueConfig {
    prefix: String,
    pub(crate) max_payload_bytes: usize,
    past_tolerance: Option<Duration>,
    response_timeout: Duration,
    connect_timeout: Duration,
    dedup_window: Duration,
    tls: Option<TlsConfig>,
    durability: Option<Durability>,
}

/// Opt-in durability: a write is acknowledged only once `WAIT` confirms that this many
/// replicas have it ([`QueueConfig::set_durability`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Durability {
    /// Replicas that must confirm each write (at least 1).
    pub replicas: u32,
    /// How long to wait for them before the write is reported as not replicated.
    pub timeout: Duration,
}

/// Certificates for `rediss://` URLs beyond the system's trust store: a private CA, and a
/// client certificate for servers that require one (`tls-auth-clients yes`, Redis' default).
/// PEM bytes, as read from the files.
#[derive(Clone, Default)]
pub struct TlsConfig {
    root_certificate: Option<Vec<u8>>,
    client: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print a private key.
        f.debug_struct("TlsConfig")
            .field("root_certificate", &self.root_certificate.is_some())
            .field("client_certificate", &self.client.is_some())
            .finish()
    }
}

impl TlsConfig {
    /// Trust this CA (PEM) for the server's certificate, instead of the system's roots.
    pub fn set_root_certificate(mut self, pem: Vec<u8>) -> Self {
        self.root_certificate = Some(pem);
        self
    }

    /// Present this certificate and private key (both PEM) to the server.
    pub fn set_client_certificate(mut self, cert_pem: Vec<u8>, key_pem: Vec<u8>) -> Self {
        self.client = Some((cert_pem, key_pem));
        self
    }

    pub(crate) fn certificates(&self) -> redis::TlsCertificates {
        redis::TlsCertificates {
            client_tls: self.client.clone().map(|(client_cert, client_key)| {
                redis::ClientTlsConfig {
                    client_cert,
                    client_key,
                }
            }),
            root_cert: self.root_certificate.clone(),
        }
    }
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            prefix: DEFAULT_PREFIX.to_owned(),
            max_payload_bytes: DEFAULT_MAX_PAYLOAD_BYTES,
            past_tolerance: Some(DEFAULT_PAST_TOLERANCE),
            response_timeout: DEFAULT_RESPONSE_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            dedup_window: DEFAULT_DEDUP_WINDOW,
            tls: None,
            durability: None,
        }
    }
}

impl QueueConfig {
    /// The key namespace (default [`DEFAULT_PREFIX`], `"punctual"`): keys are `prefix:{queue}:…`.
    pub fn set_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The largest encoded job data accepted (default [`DEFAULT_MAX_PAYLOAD_BYTES`]).
    pub fn set_max_payload_bytes(mut self, limit: usize) -> Self {
        self.max_payload_bytes = limit;
        self
    }

    /// How far in the past (by the Redis server's clock) an absolute due time may be before
    /// scheduling it is refused with [`Error::InThePast`] (default [`DEFAULT_PAST_TOLERANCE`]).
    /// A time inside the tolerance is due at once. `None` accepts any past time. Relative
    /// delays are never in the past.
    pub fn set_past_tolerance(mut self, tolerance: Option<Duration>) -> Self {
        self.past_tolerance = tolerance;
        self
    }

    /// How long to wait for any one Redis reply (default [`DEFAULT_RESPONSE_TIMEOUT`]).
    pub fn set_response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// How long to wait for a connection to Redis (default [`DEFAULT_CONNECT_TIMEOUT`]).
    pub fn set_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long the id of an acknowledged job stays taken (default [`DEFAULT_DEDUP_WINDOW`]).
    /// Within it, scheduling the id again creates nothing (`created: false`), so a schedule
    /// call sent again after its reply was lost cannot run a job that already finished a
    /// second time. Costs about 100 bytes of Redis memory per job finished in the window;
    /// zero turns it off. It is applied by the worker's acknowledgements, so set it where
    /// workers run.
    pub fn set_dedup_window(mut self, window: Duration) -> Self {
        self.dedup_window = window;
        self
    }

    /// Certificates for a `rediss://` URL (default: none; the system's roots verify the
    /// server). A `redis://` URL ignores them.
    pub fn set_tls(mut self, tls: TlsConfig) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Acknowledge a schedule, an ack and a move to the dead set only after `WAIT` confirms
    /// that `replicas` replicas have it, waiting at most `timeout` (default: off; Redis
    /// acknowledges once the primary has it). With it on, a job whose scheduling was
    /// acknowledged survives a failover to any confirming replica. When fewer replicas confirm
    /// in time the call fails with [`Error::NotReplicated`]: the write is on the primary but
    /// may be lost in a failover (schedule again with the same id: it is idempotent). Costs one
    /// replication round trip per script call (see BENCHMARKS.md). `None` turns it off.
    pub fn set_durability(mut self, durability: Option<Durability>) -> Self {
        self.durability = durability;
        self
    }

    /// The durability setting in force.
    pub fn durability(&self) -> Option<Durability> {
        self.durability
    }

    /// The TLS certificates in force, if any were set.
    pub fn tls(&self) -> Option<&TlsConfig> {
        self.tls.as_ref()
    }

    /// The dedup window in force.
    pub fn dedup_window(&self) -> Duration {
        self.dedup_window
    }

    /// The key namespace.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The response timeout in force.
    pub fn response_timeout(&self) -> Duration {
        self.response_timeout
    }

    /// The connection timeout in force.
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    pub(crate) fn tolerance_ms(&self) -> i64 {
        self.past_tolerance
            .map(|t| delay_ms(t).unwrap_or(i64::MAX as u64) as i64)
            .unwrap_or(-1)
    }

    /// Checks every setting; [`crate::Namespace::connect`] calls it, so a bad setting is an
    /// error before anything connects instead of a silent fallback.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for a dedup window or past tolerance longer than
    /// [`crate::MAX_DELAY`] (100 years: not a millisecond count Redis can hold), a zero or
    /// over-long response or connect timeout (at most 1 hour), or a payload limit of 0.
    pub fn validate(&self) -> Result<()> {
        let invalid = |what, reason: &str| {
            Err(Error::InvalidConfig {
                what,
                reason: reason.to_owned(),
            })
        };
        if delay_ms(self.dedup_window).is_none() {
            return invalid("queue dedup window", "must be at most 100 years");
        }
        if self.past_tolerance.is_some_and(|t| delay_ms(t).is_none()) {
            return invalid(
                "queue past tolerance",
                "must be at most 100 years (or None: any past time)",
            );
        }
        let hour = Duration::from_secs(3600);
        if self.response_timeout.is_zero() || self.response_timeout > hour {
            return invalid("queue response timeout", "must be between 1 ms and 1 hour");
        }
        if self.connect_timeout.is_zero() || self.connect_timeout > hour {
            return invalid("queue connect timeout", "must be between 1 ms and 1 hour");
        }
        if self.max_payload_bytes == 0 {
            return invalid("queue max payload bytes", "must be at least 1");
        }
        if let Some(d) = self.durability {
            if d.replicas == 0 {
                return invalid(
                    "queue durability",
                    "needs at least 1 replica (or None: off)",
                );
            }
            if d.timeout.is_zero() || d.timeout > hour {
                return invalid(
                    "queue durability timeout",
                    "must be between 1 ms and 1 hour",
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_out_of_range_are_refused_not_bent() {
        assert!(QueueConfig::default().validate().is_ok());
        let century = Duration::from_secs(200 * 365 * 24 * 3600);
        let bad = [
            QueueConfig::default().set_dedup_window(century),
            QueueConfig::default().set_past_tolerance(Some(century)),
            QueueConfig::default().set_response_timeout(Duration::ZERO),
            QueueConfig::default().set_connect_timeout(Duration::from_secs(7200)),
            QueueConfig::default().set_max_payload_bytes(0),
        ];
        for config in bad {
            let err = config.validate().expect_err("refused");
            assert!(
                matches!(err, Error::InvalidConfig { .. }),
                "{config:?}: {err}"
            );
        }
        assert!(QueueConfig::default()
            .set_dedup_window(Duration::ZERO)
            .validate()
            .is_ok());
    }
}
