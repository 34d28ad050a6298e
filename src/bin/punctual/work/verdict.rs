//! The outcome contract of `work --exec` and `work --pipe`: one JSON object that says what
//! became of a job, for any language.
//!
//! ```text
//! {"outcome": "done", "result": <any JSON>}          done; the result is kept with the job when
//!                                                    the queue keeps completed jobs
//! {"outcome": "retry", "in": "30s", "error": "…"}    failed; try again in 30 s (uses an attempt)
//! {"outcome": "retry", "error": "…"}                 failed; try again after the backoff
//! {"outcome": "snooze", "in": "10m"}                 not now; again in 10 min (no attempt used)
//! {"outcome": "fail", "error": "…"}                  failed for good: to the dead set now
//! ```
//!
//! `--exec` commands write it to the file named by `PUNCTUAL_VERDICT_FILE` (optional: without
//! it the exit status decides, 0 done, anything else failed); `--pipe` handlers write it as
//! one line on stdout for every job (required). Durations are humantime strings, as on the
//! command line. Anything else, an unknown outcome or field, a bad duration, is a job error
//! that names the problem, never a crash.

use punctual::Outcome;
use serde::Deserialize;

/// Largest verdict read, in bytes (a result may be as large as a job's data).
pub(crate) const MAX_VERDICT: usize = punctual::DEFAULT_MAX_PAYLOAD_BYTES + 4096;

/// A verdict as written.
#[derive(Debug, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case", deny_unknown_fields)]
enum Verdict {
    Done {
        /// Kept with the completed job (`Outcome::DoneWith`), as MessagePack.
        #[serde(default)]
        result: Option<serde_json::Value>,
    },
    Retry {
        #[serde(default, rename = "in")]
        delay: Option<String>,
        #[serde(default)]
        error: Option<String>,
    },
    Snooze {
        #[serde(rename = "in")]
        delay: String,
    },
    Fail {
        #[serde(default)]
        error: Option<String>,
    },
}

/// The outcome a verdict asks for, or why it is not a verdict.
pub(crate) fn parse(text: &str) -> Result<Outcome, String> {
    let verdict: Verdict = serde_json::from_str(text.trim()).map_err(|e| e.to_string())?;
    let duration = |text: &str| {
        humantime::parse_duration(text.trim()).map_err(|e| format!("\"in\": {text:?}: {e}"))
    };
    Ok(match verdict {
        Verdict::Done { result: None } => Outcome::Done,
        Verdict::Done {
            result: Some(result),
        } => Outcome::done_with(&result),
        Verdict::Retry { delay, error } => {
            let error = error.unwrap_or_else(|| "the command asked for a retry".to_owned());
            match delay {
                Some(delay) => Outcome::RetryAfter(duration(&delay)?, error),
                None => Outcome::Fail(error),
            }
        }
        Verdict::Snooze { delay } => Outcome::Snooze(duration(&delay)?),
        Verdict::Fail { error } => {
            Outcome::Kill(error.unwrap_or_else(|| "the command failed it for good".to_owned()))
        }
    })
}

/// How an `--exec` command ended, as far as the verdict rules care.
#[derive(Debug)]
pub(crate) enum Exit {
    /// It exited with status 0.
    Success,
    /// It exited otherwise: the words for it ("exit status 3", "killed by signal 9").
    Failure(String),
}

/// The outcome of an `--exec` attempt that ran to its end: a verdict, when the command wrote
/// one, decides; otherwise the exit status does. `stderr` is the tail of its error output.
pub(crate) fn decide(exit: Exit, verdict: Option<Result<String, String>>, stderr: &str) -> Outcome {
    let stderr = stderr.trim();
    match verdict {
        Some(Ok(text)) => parse(&text).unwrap_or_else(|why| {
            Outcome::Fail(format!("invalid verdict in $PUNCTUAL_VERDICT_FILE: {why}"))
        }),
        Some(Err(why)) => Outcome::Fail(format!("cannot read $PUNCTUAL_VERDICT_FILE: {why}")),
        None => match exit {
            Exit::Success => Outcome::Done,
            Exit::Failure(how) if stderr.is_empty() => Outcome::Fail(how),
            Exit::Failure(how) => Outcome::Fail(format!("{how}: {stderr}")),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn ok(text: &str) -> Outcome {
        parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn every_verdict_kind_maps_to_its_outcome() {
        let table = [
            (r#"{"outcome":"done"}"#, Outcome::Done),
            (
                r#"{"outcome":"done","result":{"sent":3}}"#,
                Outcome::done_with(&serde_json::json!({"sent": 3})),
            ),
            (
                r#"{"outcome":"retry","in":"30s","error":"429"}"#,
                Outcome::RetryAfter(Duration::from_secs(30), "429".into()),
            ),
            (
                r#"{"outcome":"retry","error":"flaky"}"#,
                Outcome::Fail("flaky".into()),
            ),
            (
                r#"{"outcome":"retry"}"#,
                Outcome::Fail("the command asked for a retry".into()),
            ),
            (
                r#" {"outcome":"snooze","in":"1h 30m"} "#,
                Outcome::Snooze(Duration::from_secs(5400)),
            ),
            (
                r#"{"outcome":"fail","error":"no such user"}"#,
                Outcome::Kill("no such user".into()),
            ),
        ];
        for (text, want) in table {
            assert_eq!(ok(text), want, "{text}");
        }
    }

    #[test]
    fn bad_verdicts_say_what_is_wrong() {
        let table = [
            ("", "EOF"),
            ("done", "expected"),
            (r#"{"outcome":"maybe"}"#, "unknown variant"),
            (r#"{"result":1}"#, "missing field `outcome`"),
            (r#"{"outcome":"snooze"}"#, "missing field `in`"),
            (r#"{"outcome":"snooze","in":"soon"}"#, "\"in\": \"soon\""),
            (r#"{"outcome":"retry","in_ms":5}"#, "unknown field `in_ms`"),
            (r#"{"outcome":"done"} {"outcome":"done"}"#, "trailing"),
        ];
        for (text, needle) in table {
            let err = parse(text).expect_err(text);
            assert!(err.contains(needle), "{text}: {err}");
        }
    }

    #[test]
    fn the_verdict_wins_over_the_exit_status() {
        let done = Some(Ok(r#"{"outcome":"done"}"#.to_owned()));
        assert_eq!(
            decide(Exit::Failure("exit status 1".into()), done, ""),
            Outcome::Done
        );
        let fail = Some(Ok(r#"{"outcome":"fail","error":"gone"}"#.to_owned()));
        assert_eq!(
            decide(Exit::Success, fail, ""),
            Outcome::Kill("gone".into())
        );
        let bad = decide(Exit::Success, Some(Ok("{".into())), "");
        assert!(
            matches!(&bad, Outcome::Fail(m) if m.starts_with("invalid verdict")),
            "{bad:?}"
        );
    }

    /// The README's table of verdicts is real: every line of it parses to what it says.
    #[test]
    fn the_readmes_verdicts_parse() {
        let readme = include_str!("../../../../README.md");
        let table = readme
            .split("**The outcome contract.**")
            .nth(1)
            .and_then(|rest| rest.split("```text").nth(1))
            .and_then(|block| block.split("```").next())
            .expect("the README has the verdict table");
        let mut kinds = Vec::new();
        for line in table.lines().filter(|l| l.starts_with('{')) {
            let mut values =
                serde_json::Deserializer::from_str(line).into_iter::<serde_json::Value>();
            let json = values.next().expect("a JSON object").expect("valid JSON");
            let outcome = parse(&json.to_string()).unwrap_or_else(|e| panic!("{line}: {e}"));
            kinds.push(std::mem::discriminant(&outcome));
        }
        assert_eq!(kinds.len(), 5, "{table}");
        kinds.dedup();
        assert_eq!(kinds.len(), 5, "each line shows another outcome");
    }

    #[test]
    fn without_a_verdict_the_exit_status_decides() {
        assert_eq!(decide(Exit::Success, None, "noise"), Outcome::Done);
        assert_eq!(
            decide(
                Exit::Failure("exit status 3".into()),
                None,
                " smtp said no\n"
            ),
            Outcome::Fail("exit status 3: smtp said no".into())
        );
        assert_eq!(
            decide(Exit::Failure("killed by signal 9".into()), None, ""),
            Outcome::Fail("killed by signal 9".into())
        );
    }
}
