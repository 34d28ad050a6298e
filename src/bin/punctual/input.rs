//! Turning command-line text into values: durations (humantime), RFC 3339 times, JSON data.
//! Every parser names the bad value in its error.

use std::time::{Duration, SystemTime};

use punctual::When;

/// A due time given on the command line (`--in` or `--at`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct CliWhen(pub(crate) When);

/// A humantime duration: "750ms", "90s", "1h 30m".
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|e| format!("invalid duration {text:?}: {e} (examples: 750ms, 90s, 1h 30m)"))
}

/// `--in`: a duration from now; a negative one ("-5s") is in the past and means due now.
pub(crate) fn parse_when(text: &str) -> Result<CliWhen, String> {
    match text.trim().strip_prefix('-') {
        Some(past) => parse_duration(past).map(|_| CliWhen(When::NOW)),
        None => parse_duration(text).map(|d| CliWhen(When::In(d))),
    }
}

/// `--at`: an RFC 3339 time.
pub(crate) fn parse_at(text: &str) -> Result<CliWhen, String> {
    parse_time(text).map(|t| CliWhen(When::At(t)))
}

/// An RFC 3339 time with `Z` or a numeric offset (`+01:00`, `-05:30`).
pub(crate) fn parse_time(text: &str) -> Result<SystemTime, String> {
    let bad = |why: &str| {
        format!("invalid time {text:?}: {why} (expected RFC 3339, e.g. 2026-11-22T09:00:00Z)")
    };
    let s = text.trim();
    if !s.is_ascii() {
        return Err(bad("unexpected characters"));
    }
    // Split off a numeric offset, which humantime does not read.
    let (base, offset_secs) = match s.len().checked_sub(6).map(|i| s.split_at(i)) {
        Some((base, off))
            if (off.starts_with('+') || off.starts_with('-')) && off.as_bytes()[3] == b':' =>
        {
            let hours: u64 = off[1..3].parse().map_err(|_| bad("bad offset"))?;
            let minutes: u64 = off[4..6].parse().map_err(|_| bad("bad offset"))?;
            if hours > 23 || minutes > 59 {
                return Err(bad("offset out of range"));
            }
            let secs = (hours * 3600 + minutes * 60) as i64;
            (base, if off.starts_with('-') { -secs } else { secs })
        }
        _ => (s, 0),
    };
    let base = match base.strip_suffix(['Z', 'z']) {
        Some(base) => base,
        None if offset_secs != 0 || s.len() != base.len() => base,
        None => return Err(bad("no time zone (end with Z or an offset like +01:00)")),
    };
    if base.len() < 19 || base.as_bytes()[10] != b'T' && base.as_bytes()[10] != b't' {
        return Err(bad("not a date and time"));
    }
    let utc = humantime::parse_rfc3339(&format!("{}Z", base.replace('t', "T")))
        .map_err(|e| bad(&e.to_string()))?;
    // Local time = UTC + offset, so UTC = local - offset.
    let shift = Duration::from_secs(offset_secs.unsigned_abs());
    let t = if offset_secs >= 0 {
        utc.checked_sub(shift)
    } else {
        utc.checked_add(shift)
    };
    t.ok_or_else(|| bad("out of range"))
}

/// Formats a time as RFC 3339 UTC with milliseconds.
pub(crate) fn format_time(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// Formats a duration for people, to the millisecond.
pub(crate) fn format_duration(d: Duration) -> String {
    let ms = Duration::from_millis(d.as_millis().min(u64::MAX as u128) as u64);
    if ms.is_zero() {
        return "0ms".to_owned();
    }
    humantime::format_duration(ms).to_string()
}

/// A rate, `N/PERIOD` ("10/1s", "100/1m").
pub(crate) fn parse_rate(text: &str) -> Result<(u32, Duration), String> {
    let bad = || format!("invalid rate {text:?}: expected N/PERIOD, e.g. 10/1s or 100/1m");
    let (n, per) = text.split_once('/').ok_or_else(bad)?;
    let n: u32 = n.trim().parse().ok().filter(|&n| n > 0).ok_or_else(bad)?;
    let per = parse_duration(per.trim()).map_err(|e| format!("{}: {e}", bad()))?;
    Ok((n, per))
}

/// JSON text to the MessagePack the library stores (maps with named fields).
pub(crate) fn json_to_msgpack(json: &str, origin: &str) -> Result<Vec<u8>, String> {
    let value: serde_json::Value =
        serde_json::from_str(json).map_err(|e| format!("invalid JSON in {origin}: {e}"))?;
    rmp_serde::to_vec_named(&value).map_err(|e| format!("cannot encode {origin}: {e}"))
}

/// Applies a job's steering options (`schedule` flags, or the fields of an `import` line) to
/// `job`; the error names the bad field.
pub(crate) fn steer(
    mut job: punctual::NewJob,
    args: &crate::cli::SteerArgs,
) -> Result<punctual::NewJob, String> {
    use punctual::{OnConflict, OnExpiry};
    if let Some(mode) = &args.on_conflict {
        let mut mode = OnConflict::parse(mode).ok_or_else(|| {
            format!(
                "invalid on_conflict {mode:?}: expected reject, replace, debounce, \
                 keep-earliest or keep-latest"
            )
        })?;
        if let Some(wait) = &args.max_wait {
            if !matches!(mode, OnConflict::Debounce { .. }) {
                return Err("max_wait goes with on_conflict debounce".to_owned());
            }
            mode = OnConflict::Debounce {
                max_wait: Some(parse_duration(wait)?),
            };
        }
        job = job.on_conflict(mode);
    } else if args.max_wait.is_some() {
        return Err("max_wait goes with on_conflict debounce".to_owned());
    }
    if let Some(at) = &args.expires_at {
        job = job.expires_at(parse_time(at)?);
    }
    if let Some(lateness) = &args.max_lateness {
        job = job.max_lateness(parse_duration(lateness)?);
    }
    match args.on_expiry.as_deref() {
        None | Some("dead") => {}
        Some("drop") => job = job.on_expiry(OnExpiry::Drop),
        Some(other) => {
            return Err(format!(
                "invalid on_expiry {other:?}: expected dead or drop"
            ))
        }
    }
    if let Some(timeout) = &args.timeout {
        job = job.timeout(parse_duration(timeout)?);
    }
    match (&args.compensate_kind, &args.compensate_data) {
        (Some(kind), data) => {
            let data = json_to_msgpack(data.as_deref().unwrap_or("null"), "compensate_data")?;
            job = job.compensate_with(punctual::NewJob::from_msgpack(kind.clone(), data));
        }
        (None, Some(_)) => return Err("compensate_data goes with compensate_kind".to_owned()),
        (None, None) => {}
    }
    if let Some(key) = &args.limit_key {
        if key.is_empty() || key.len() > punctual::MAX_LIMIT_KEY || key.contains(['\t', '\n']) {
            return Err(format!(
                "invalid limit key {key:?}: 1 to {} bytes without tab or newline",
                punctual::MAX_LIMIT_KEY
            ));
        }
        job = job.limit_key(key.clone());
    }
    if let Some(priority) = args.priority {
        let bounds = i64::from(punctual::MIN_PRIORITY)..=i64::from(punctual::MAX_PRIORITY);
        match i8::try_from(priority) {
            Ok(p) if bounds.contains(&priority) => job = job.priority(p),
            _ => {
                return Err(format!(
                    "invalid priority {priority}: expected -9 (lowest) to 9 (highest)"
                ))
            }
        }
    }
    Ok(job)
}

/// A job as JSON: one line of an `import` file, and the body of `POST
/// /api/v1/queues/{queue}/jobs`. The fields and their meaning are the `schedule` flags'.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct JobSpec {
    id: Option<String>,
    #[serde(rename = "in")]
    in_: Option<String>,
    at: Option<String>,
    #[serde(default)]
    data: serde_json::Value,
    kind: Option<String>,
    max_attempts: Option<u32>,
    on_conflict: Option<String>,
    max_wait: Option<String>,
    expires_at: Option<String>,
    max_lateness: Option<String>,
    on_expiry: Option<String>,
    timeout: Option<String>,
    priority: Option<i64>,
    compensate_kind: Option<String>,
    compensate_data: Option<serde_json::Value>,
    limit_key: Option<String>,
    partition_key: Option<String>,
}

impl JobSpec {
    /// Due now when neither `in` nor `at` is given (the HTTP API's default; an import line
    /// must say).
    pub(crate) fn due_now_by_default(mut self) -> Self {
        if self.in_.is_none() && self.at.is_none() {
            self.in_ = Some("0s".to_owned());
        }
        self
    }

    pub(crate) fn into_job(self) -> Result<punctual::NewJob, String> {
        let when = match (&self.in_, &self.at) {
            (Some(d), None) => crate::input::parse_when(d)?.0,
            (None, Some(t)) => crate::input::parse_at(t)?.0,
            _ => return Err("needs exactly one of \"in\" and \"at\"".to_owned()),
        };
        let data = rmp_serde::to_vec_named(&self.data).map_err(|e| format!("data: {e}"))?;
        let mut job = punctual::NewJob::from_msgpack(
            self.kind.as_deref().unwrap_or(crate::DEFAULT_KIND),
            data,
        )
        .when(when);
        if let Some(id) = self.id {
            job = job.id(id);
        }
        if let Some(key) = self.partition_key {
            job = job.partition_key(key);
        }
        if let Some(n) = self.max_attempts {
            job = job.max_attempts(n);
        }
        let steer = crate::cli::SteerArgs {
            on_conflict: self.on_conflict,
            max_wait: self.max_wait,
            expires_at: self.expires_at,
            max_lateness: self.max_lateness,
            on_expiry: self.on_expiry,
            timeout: self.timeout,
            priority: self.priority,
            compensate_kind: self.compensate_kind,
            compensate_data: self.compensate_data.map(|d| d.to_string()),
            limit_key: self.limit_key,
        };
        crate::input::steer(job, &steer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_with_offsets_mean_the_same_instant() {
        let z = parse_time("2026-11-22T09:00:00Z").unwrap();
        assert_eq!(parse_time("2026-11-22T10:00:00+01:00").unwrap(), z);
        assert_eq!(parse_time("2026-11-22T03:30:00-05:30").unwrap(), z);
        assert_eq!(parse_time("2026-11-22T09:00:00.000+00:00").unwrap(), z);
        for bad in [
            "tomorrow",
            "2026-11-22",
            "2026-11-22 09:00:00Z",
            "2026-13-22T09:00:00Z",
            "2026-11-22T09:00:00+25:00",
            "2026-11-22T09:00:00é",
            "2026-11-22T09:00:00",
            "",
        ] {
            let err = parse_time(bad).unwrap_err();
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn durations_and_past_delays() {
        assert_eq!(parse_duration("1h 30m").unwrap(), Duration::from_secs(5400));
        assert!(parse_duration("soon").unwrap_err().contains("\"soon\""));
        assert!(matches!(parse_when("-5s").unwrap().0, When::In(d) if d.is_zero()));
        assert!(matches!(parse_when("90s").unwrap().0, When::In(d) if d.as_secs() == 90));
        assert!(parse_when("-x").is_err());
    }

    #[test]
    fn json_becomes_msgpack() {
        let bytes = json_to_msgpack(r#"{"to":"a@b"}"#, "--data").unwrap();
        let back: serde_json::Value = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(back["to"], "a@b");
        assert!(json_to_msgpack("{oops", "--data")
            .unwrap_err()
            .contains("--data"));
    }
}
