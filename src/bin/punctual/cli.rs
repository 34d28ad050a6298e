//! The command line: every command, flag and default, in one place.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::input::{parse_duration, parse_when, CliWhen};

/// punctual: on-time delayed jobs on Redis. Sidecar promoter, worker for any language, and
/// operator tools.
#[derive(Debug, Parser)]
#[command(name = "punctual", version, propagate_version = true)]
pub(crate) struct Cli {
    /// Redis to use; a password in it is never printed. Any node of a Redis Cluster works
    /// (cluster mode is detected); several seed nodes are given as a comma-separated list
    /// (`redis://h1:7000,h2:7001`) or by repeating the flag.
    #[arg(
        long,
        global = true,
        env = "PUNCTUAL_REDIS_URL",
        default_value = "redis://127.0.0.1:6379",
        hide_env_values = true,
        action = clap::ArgAction::Append
    )]
    pub(crate) redis_url: Vec<String>,

    /// For rediss:// URLs: the CA certificate (PEM file) that signed the server's certificate,
    /// when it is not in the system's trust store.
    #[arg(long, global = true, env = "PUNCTUAL_TLS_CA_CERT", value_name = "FILE")]
    pub(crate) tls_ca_cert: Option<PathBuf>,

    /// For rediss:// URLs: a client certificate (PEM file), for servers that require one.
    #[arg(
        long,
        global = true,
        env = "PUNCTUAL_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    pub(crate) tls_cert: Option<PathBuf>,

    /// The private key (PEM file) of --tls-cert.
    #[arg(
        long,
        global = true,
        env = "PUNCTUAL_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    pub(crate) tls_key: Option<PathBuf>,

    /// Durability: acknowledge a schedule, an ack and a move to the dead set only once this
    /// many replicas confirm it (Redis WAIT), so that an acknowledged job survives a
    /// failover. Off (0) by default.
    #[arg(
        long,
        global = true,
        env = "PUNCTUAL_WAIT_REPLICAS",
        default_value_t = 0
    )]
    pub(crate) wait_replicas: u32,

    /// With --wait-replicas: how long to wait for the replicas before the write is reported
    /// as not replicated (it is on the primary, but may be lost in a failover).
    #[arg(long, global = true, env = "PUNCTUAL_WAIT_TIMEOUT", value_parser = parse_duration, default_value = "1s")]
    pub(crate) wait_timeout: std::time::Duration,

    /// Key namespace: keys are PREFIX:{queue}:...
    #[arg(long, global = true, env = "PUNCTUAL_PREFIX", default_value = punctual::keys::DEFAULT_PREFIX)]
    pub(crate) prefix: String,

    /// Log format (logs go to stderr).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub(crate) log_format: LogFormat,

    /// More logging (-v debug, -vv trace). RUST_LOG, when set, overrides -v and -q.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub(crate) verbose: u8,

    /// Less logging (-q errors only, -qq nothing).
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "verbose")]
    pub(crate) quiet: u8,

    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the promoter (the sidecar): due jobs to ready, expired leases back.
    ///
    /// With no QUEUE it serves every queue of the namespace, including ones created later.
    /// Safe to run as several replicas. SIGTERM or SIGINT stops it at once (it holds no jobs).
    Promote(PromoteArgs),
    /// Serve the web dashboard and the HTTP API (/api/v1), with /metrics and /healthz.
    ///
    /// Without --token-env or --basic-auth-env it listens on a loopback address only (or with
    /// --no-auth, behind a proxy that authenticates). SIGTERM or SIGINT stops it.
    Web(WebArgs),
    /// Schedule one job; prints its id.
    Schedule(Box<ScheduleArgs>),
    /// Bulk-schedule jobs from newline-delimited JSON.
    ///
    /// One object per line: {"id"?, "in"|"at", "data"?, "kind"?, "max_attempts"?} and any of
    /// schedule's options as fields (on_conflict, max_wait, expires_at, max_lateness,
    /// on_expiry, timeout, priority, compensate_kind, compensate_data, limit_key). A bad
    /// line is reported with its line number and skipped; the others are scheduled. Exit
    /// status 2 when any line was rejected.
    Import(ImportArgs),
    /// Run a worker for any language: a command per job (--exec) or long-lived handler
    /// processes fed one job per line (--pipe).
    ///
    /// Every command runs in a process group of its own, and the whole group is ended
    /// (SIGTERM, then SIGKILL after --kill-after) when its attempt ends for any reason. If the
    /// worker dies, even by SIGKILL, a supervisor process ends its commands.
    ///
    /// SIGTERM or SIGINT: stop taking jobs, let running commands finish within --grace, then
    /// end the rest and hand their jobs back. Nothing is lost.
    Work(WorkArgs),
    /// Internal: the supervisor that `work` starts to end its commands if it dies.
    #[command(name = "__supervise", hide = true)]
    Supervise(SuperviseArgs),
    /// Show one job: state, times, attempts, last error, data.
    Show(JobArgs),
    /// Wait for a job to end. Prints its result (JSON; with --json the whole job) and exits 0
    /// when it completed, exits 1 when it died, was cancelled or does not exist, and 3 when
    /// it had not ended within --timeout. Results are kept when the queue keeps completed jobs
    /// (`punctual queue set --keep-completed`).
    Wait(WaitArgs),
    /// Cancel a job: a waiting or dead job is deleted; a running one is stopped by its
    /// worker (within a third of its lease) and moved to the dead set, reason `cancelled`.
    Cancel(CancelArgs),
    /// Move a job (scheduled, ready or dead) to a new due time.
    Reschedule(RescheduleArgs),
    /// Follow a queue's event log (`punctual queue set --events N` turns it on): one line per
    /// change of a job, as it happens, until SIGTERM or SIGINT. Each line ends with (in JSON:
    /// has) its position, which --since takes to resume right after it.
    Watch(WatchArgs),
    /// List jobs oldest first.
    Ls(LsArgs),
    /// Per queue: jobs in each state, next due time, oldest overdue age.
    Stats(StatsArgs),
    /// Pause a queue: workers claim nothing from it until `resume` (running jobs finish;
    /// promotion goes on). Workers waiting out a pause send no commands.
    Pause(QueueArgs),
    /// Resume a paused queue: workers waiting out the pause take jobs again at once.
    Resume(QueueArgs),
    /// Retry or purge dead jobs.
    #[command(subcommand)]
    Dead(DeadCommand),
    /// Manage queues: remove one (its keys and its registry entry).
    #[command(subcommand)]
    Queue(QueueCommand),
    /// Recurring schedules: each fire time becomes an ordinary job, created exactly once by
    /// the promoters (`punctual promote`) a short while before it is due.
    #[command(subcommand)]
    Cron(CronCommand),
    /// Rate and concurrency limits per key: jobs scheduled with `--limit-key KEY` start only as
    /// the rule for KEY allows; until then they wait, no attempt used.
    #[command(subcommand)]
    Limit(LimitCommand),
}

#[derive(Debug, Subcommand)]
pub(crate) enum LimitCommand {
    /// Set the rule for a limit key, a prefix pattern ("customer:*": each key with the prefix
    /// counted on its own) or "*" (every key).
    Set(LimitSetArgs),
    /// List a queue's rules, and how many jobs each limit key has deferred.
    Ls(LimitLsArgs),
    /// Remove the rule for a key or pattern.
    Rm(LimitRmArgs),
}

#[derive(Debug, Args)]
pub(crate) struct LimitSetArgs {
    /// The queue's name.
    pub(crate) queue: String,
    /// The limit key, pattern or "*".
    pub(crate) key: String,
    /// At most N starts per PERIOD, evenly spaced ("10/1s", "100/1m"): never more than N in
    /// any window of PERIOD.
    #[arg(long, value_name = "N/PERIOD", value_parser = crate::input::parse_rate)]
    pub(crate) rate: Option<(u32, Duration)>,
    /// At most C running at once.
    #[arg(long, value_name = "C", value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) concurrency: Option<u32>,
}

#[derive(Debug, Args)]
pub(crate) struct LimitLsArgs {
    /// The queue's name.
    pub(crate) queue: String,
    /// Print JSON: {"rules": [{"key", "rate", "per", "concurrency"}], "deferred": {KEY: N}}.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct LimitRmArgs {
    /// The queue's name.
    pub(crate) queue: String,
    /// The key or pattern, as set.
    pub(crate) key: String,
}

#[derive(Debug, Subcommand)]
pub(crate) enum CronCommand {
    /// Add a recurring schedule, or change the one with this id (from its next occurrence
    /// not created yet).
    Add(Box<CronAddArgs>),
    /// List a queue's recurring schedules with their next fire time.
    Ls(CronLsArgs),
    /// Print a schedule's next fire times, in its time zone and in UTC.
    Next(CronNextArgs),
    /// Remove a schedule and its occurrences that wait for their fire time.
    Rm(CronIdArgs),
    /// Pause a schedule: it creates nothing, and its occurrences that wait for their fire time
    /// are removed.
    Pause(CronIdArgs),
    /// Resume a paused schedule from its next fire time (the ones that fell in the pause do
    /// not run).
    Resume(CronIdArgs),
}

/// How a schedule fires: exactly one of `--cron` and `--every`.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub(crate) struct CronTimingArgs {
    /// A cron expression: "MIN HOUR DAY-OF-MONTH MONTH DAY-OF-WEEK" ("0 9 * * MON"), or six
    /// fields with seconds first; names, ranges, steps, lists and @daily-style nicknames.
    #[arg(long, value_name = "EXPR")]
    pub(crate) cron: Option<String>,
    /// A fixed interval from the start time ("90s", "1h"; at least 1s).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub(crate) every: Option<Duration>,
}

#[derive(Debug, Args)]
pub(crate) struct CronAddArgs {
    /// The queue's name.
    pub(crate) queue: String,
    /// The schedule's id (its occurrences' ids are ID and the fire time).
    pub(crate) id: String,
    #[command(flatten)]
    pub(crate) timing: CronTimingArgs,
    /// The IANA time zone the cron expression is read in ("Europe/Berlin").
    #[arg(long, value_name = "ZONE", default_value = "UTC")]
    pub(crate) tz: String,
    /// Each occurrence's data, JSON.
    #[arg(long, value_name = "JSON")]
    pub(crate) data: Option<String>,
    /// Each occurrence's kind.
    #[arg(long)]
    pub(crate) kind: Option<String>,
    /// Fire times missed while no promoter ran: once (run the latest, at once; the default),
    /// all (run each, at most 1000), skip (run none).
    #[arg(long, value_name = "once|all|skip", default_value = "once")]
    pub(crate) misfire: punctual::Misfire,
    /// No fire time before this RFC 3339 time (default: now, or the schedule's when editing).
    #[arg(long, value_name = "TIME", value_parser = crate::input::parse_time)]
    pub(crate) start: Option<std::time::SystemTime>,
    /// No fire time after this RFC 3339 time.
    #[arg(long, value_name = "TIME", value_parser = crate::input::parse_time)]
    pub(crate) end: Option<std::time::SystemTime>,
    /// Attempts of each occurrence before it goes to the dead set.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) max_attempts: Option<u32>,
    /// Each occurrence's options (--on-conflict gives every occurrence the schedule's own id,
    /// and says what a new occurrence does to one that still waits).
    #[command(flatten)]
    pub(crate) steer: SteerArgs,
}

#[derive(Debug, Args)]
pub(crate) struct CronLsArgs {
    /// The queue's name.
    pub(crate) queue: String,
    /// Print JSON, one array.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct CronNextArgs {
    /// The queue's name.
    pub(crate) queue: String,
    /// The schedule's id.
    pub(crate) id: String,
    /// How many fire times.
    #[arg(short, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub(crate) n: u16,
}

#[derive(Debug, Args)]
pub(crate) struct CronIdArgs {
    /// The queue's name.
    pub(crate) queue: String,
    /// The schedule's id.
    pub(crate) id: String,
}

/// Checks of the Redis server made by long-running commands.
#[derive(Debug, Args)]
pub(crate) struct ServerCheckArgs {
    /// Start even if maxmemory-policy may evict job keys (allkeys-*); warn instead of refusing.
    #[arg(long)]
    pub(crate) allow_eviction: bool,
}

#[derive(Debug, Args)]
pub(crate) struct PromoteArgs {
    /// Queues to serve; none = every queue of the namespace.
    pub(crate) queues: Vec<String>,
    /// Serve Prometheus metrics at http://ADDR/metrics and a health check at /healthz.
    #[arg(long, value_name = "ADDR")]
    pub(crate) metrics_addr: Option<SocketAddr>,
    /// Serve the web dashboard and the HTTP API at http://ADDR/ (as `punctual web`, with
    /// this promoter's promotion lag), with /metrics and /healthz.
    #[arg(long, value_name = "ADDR")]
    pub(crate) web_addr: Option<SocketAddr>,
    #[command(flatten)]
    pub(crate) site: SiteArgs,
    /// Most jobs moved per script call.
    #[arg(long, default_value_t = punctual::DEFAULT_BATCH)]
    pub(crate) batch: usize,
    /// Longest sleep without asking Redis (bounds the delay if a wake message is lost).
    #[arg(long, value_parser = parse_duration, default_value = "5s")]
    pub(crate) heartbeat: Duration,
    #[command(flatten)]
    pub(crate) check: ServerCheckArgs,
}

/// When a job is due: exactly one of `--in` and `--at`.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub(crate) struct WhenArgs {
    /// Due after this long, by the Redis server's clock ("90s", "1h 30m"); a negative
    /// duration ("-5s") means due now.
    #[arg(long = "in", value_name = "DURATION", value_parser = parse_when, allow_hyphen_values = true)]
    pub(crate) in_: Option<CliWhen>,
    /// Due at this RFC 3339 time ("2026-11-22T09:00:00Z", "2026-11-22T10:00:00+01:00").
    #[arg(long, value_name = "TIME", value_parser = crate::input::parse_at)]
    pub(crate) at: Option<CliWhen>,
}

impl WhenArgs {
    pub(crate) fn when(&self) -> punctual::When {
        match (&self.in_, &self.at) {
            (Some(w), _) | (None, Some(w)) => w.0,
            (None, None) => punctual::When::NOW,
        }
    }
}

#[derive(Debug, Args)]
pub(crate) struct ScheduleArgs {
    /// The queue's name.
    pub(crate) queue: String,
    #[command(flatten)]
    pub(crate) when: WhenArgs,
    /// The job's id (idempotent: scheduling an existing id writes nothing). Default: a new id.
    #[arg(long)]
    pub(crate) id: Option<String>,
    /// A label for the job's kind.
    #[arg(long)]
    pub(crate) kind: Option<String>,
    /// The job's data as JSON, or "-" to read it from stdin.
    #[arg(long, value_name = "JSON", conflicts_with = "data_file")]
    pub(crate) data: Option<String>,
    /// Read the job's data (JSON) from this file.
    #[arg(long, value_name = "PATH")]
    pub(crate) data_file: Option<PathBuf>,
    /// Attempts before the job goes to the dead set (default: the worker's).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) max_attempts: Option<u32>,
    #[command(flatten)]
    pub(crate) steer: SteerArgs,
    /// Print JSON: {"queue", "id", "outcome", "due", "created"}.
    #[arg(long)]
    pub(crate) json: bool,
}

/// A job's options that act after it is scheduled: the same fields as an `import` line.
#[derive(Debug, Args, Default)]
pub(crate) struct SteerArgs {
    /// When a job with this id exists and still waits: reject (nothing changes, the
    /// default), replace (new data and due time), debounce (new data, due time moved but
    /// capped by --max-wait), keep-earliest or keep-latest (the winning due time, with its
    /// data). A running job is never touched.
    #[arg(long, value_name = "MODE")]
    pub(crate) on_conflict: Option<String>,
    /// With --on-conflict debounce: the due time never moves past the first scheduling
    /// plus this ("5m").
    #[arg(long, value_name = "DURATION")]
    pub(crate) max_wait: Option<String>,
    /// Do not run the job after this RFC 3339 time (dead with reason `expired`).
    #[arg(long, value_name = "TIME")]
    pub(crate) expires_at: Option<String>,
    /// Do not run the job more than this after its due time ("10m").
    #[arg(long, value_name = "DURATION")]
    pub(crate) max_lateness: Option<String>,
    /// What an expired job becomes: dead (the default) or drop (deleted).
    #[arg(long, value_name = "dead|drop")]
    pub(crate) on_expiry: Option<String>,
    /// Each attempt may run this long, then it fails with reason `timed_out` ("30s").
    #[arg(long, value_name = "DURATION")]
    pub(crate) timeout: Option<String>,
    /// Run before due jobs of lower priority: -9 (lowest) to 9 (highest), 0 by default.
    /// Never before the job's due time.
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub(crate) priority: Option<i64>,
    /// If the job dies after it ran, schedule a compensating job of this kind in the same
    /// queue, due at once, in the same step (id: ID:undo, or {ID}:undo for an id without a
    /// {tag}).
    #[arg(long, value_name = "KIND")]
    pub(crate) compensate_kind: Option<String>,
    /// The compensating job's data, JSON (default null).
    #[arg(long, value_name = "JSON")]
    pub(crate) compensate_data: Option<String>,
    /// Start the job only as the queue's limit rule for this key allows (`punctual limit
    /// set`); until then it waits, no attempt used.
    #[arg(long, value_name = "KEY")]
    pub(crate) limit_key: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct ImportArgs {
    /// The queue's name.
    pub(crate) queue: String,
    /// Newline-delimited JSON file, or "-" for stdin.
    pub(crate) file: String,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("handler").required(true).args(["exec", "pipe"])))]
pub(crate) struct WorkArgs {
    /// The queues served, each as NAME or NAME=WEIGHT (1-1000, default 1). With several, one
    /// concurrency limit is shared: while every queue has jobs each gets its weight's share
    /// (critical=6 default=3 low=1: 60/30/10 %), and a queue with none leaves its share to
    /// the others.
    #[arg(required = true, value_name = "QUEUE[=WEIGHT]")]
    pub(crate) queues: Vec<String>,
    /// Serve the queues in the order named instead: a later queue only while all earlier
    /// ones have nothing ready.
    #[arg(long)]
    pub(crate) strict: bool,
    /// Command run with `sh -c` for each job: the job's data as JSON on stdin;
    /// PUNCTUAL_JOB_ID, PUNCTUAL_QUEUE, PUNCTUAL_ATTEMPT, PUNCTUAL_MAX_ATTEMPTS, PUNCTUAL_KIND
    /// and PUNCTUAL_VERDICT_FILE in the environment. Exit 0 acknowledges the job, any other
    /// exit fails the attempt, unless the command wrote a verdict (JSON) to
    /// $PUNCTUAL_VERDICT_FILE, which then decides.
    #[arg(long, value_name = "CMD")]
    pub(crate) exec: Option<String>,
    /// Long-lived handler command run with `sh -c`, one process per --concurrency: each job is
    /// one JSON line on its stdin ({"id","queue","attempt","max_attempts","kind","data"}), and
    /// it answers each with one verdict line on stdout. A handler that dies or exceeds
    /// --timeout is killed and replaced; its job's attempt fails.
    #[arg(long, value_name = "CMD")]
    pub(crate) pipe: Option<String>,
    /// Commands (or --pipe handler processes) run at once.
    #[arg(long, default_value_t = punctual::DEFAULT_CONCURRENCY)]
    pub(crate) concurrency: usize,
    /// End a job's command that runs longer than this and fail the attempt (reason
    /// `timed_out`, retried); a job's own timeout (`schedule --timeout`) wins.
    #[arg(long, value_parser = parse_duration)]
    pub(crate) timeout: Option<Duration>,
    /// When a command is ended (timeout, cancel, shutdown, lost lease, leftovers after it exits), how
    /// long its process group has between SIGTERM and SIGKILL.
    #[arg(long, value_parser = parse_duration, default_value = "1s")]
    pub(crate) kill_after: Duration,
    /// Attempts before a job goes to the dead set (a job's own limit wins).
    #[arg(long, default_value_t = punctual::DEFAULT_MAX_ATTEMPTS)]
    pub(crate) max_attempts: u32,
    /// Lease length: a job whose worker stops renewing for this long runs again elsewhere.
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    pub(crate) lease: Duration,
    /// On SIGTERM/SIGINT, how long running commands may finish before they are ended and
    /// their jobs handed back.
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    pub(crate) grace: Duration,
    /// Serve Prometheus metrics at http://ADDR/metrics and health at /healthz.
    #[arg(long, value_name = "ADDR")]
    pub(crate) metrics_addr: Option<SocketAddr>,
    #[command(flatten)]
    pub(crate) check: ServerCheckArgs,
}

/// Arguments of the hidden `__supervise` command (see `work/supervisor.rs`).
#[derive(Debug, Args)]
pub(crate) struct SuperviseArgs {
    /// The value of PUNCTUAL_WORKER that marks the worker's commands.
    #[arg(long)]
    pub(crate) mark: String,
    /// Milliseconds between SIGTERM and SIGKILL.
    #[arg(long)]
    pub(crate) kill_after_ms: u64,
    /// The worker's verdict directory, removed at the end.
    #[arg(long)]
    pub(crate) dir: Option<std::path::PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct JobArgs {
    /// The queue's name.
    pub(crate) queue: String,
    /// The job's id.
    pub(crate) id: String,
    /// Print JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct WaitArgs {
    #[command(flatten)]
    pub(crate) job: JobArgs,
    /// How long to wait.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = crate::input::parse_duration)]
    pub(crate) timeout: std::time::Duration,
}

#[derive(Debug, Args)]
pub(crate) struct CancelArgs {
    #[command(flatten)]
    pub(crate) job: JobArgs,
    /// For a running job: how long to wait for its worker to stop it ("0s": do not wait).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = crate::input::parse_duration)]
    pub(crate) wait: std::time::Duration,
}

#[derive(Debug, Args)]
pub(crate) struct RescheduleArgs {
    /// The queue's name.
    pub(crate) queue: String,
    /// The job's id.
    pub(crate) id: String,
    #[command(flatten)]
    pub(crate) when: WhenArgs,
}

/// A job state named on the command line: the library's vocabulary ([`punctual::JobState`]).
fn parse_state(text: &str) -> Result<punctual::JobState, String> {
    punctual::JobState::parse(text).ok_or_else(|| {
        let names: Vec<&str> = punctual::JobState::ALL.iter().map(|s| s.as_str()).collect();
        format!("expected one of {}", names.join(", "))
    })
}

#[derive(Debug, Args)]
pub(crate) struct WatchArgs {
    /// The queue's name.
    pub(crate) queue: String,
    /// Where to start: "now" (the default: changes from now on), "start" (the oldest the log
    /// holds), or a position a previous line printed (resumes right after it).
    #[arg(long, default_value = "now", value_name = "now|start|POSITION")]
    pub(crate) since: String,
    /// Print JSON, one object per line: {"position", "at", "queue", "event", "id", "attempt",
    /// "reason"}.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct LsArgs {
    /// The queue's name.
    pub(crate) queue: String,
    /// Only this state (default: every state, in this order).
    #[arg(long, value_parser = parse_state)]
    pub(crate) state: Option<punctual::JobState>,
    /// At most this many jobs per state.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=punctual::MAX_LIST as u64))]
    pub(crate) limit: u64,
    /// Print JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct StatsArgs {
    /// Queues to report; none = every queue of the namespace.
    pub(crate) queues: Vec<String>,
    /// Print JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum QueueCommand {
    /// Create a queue, optionally partitioned over several hash slots (so over the masters of
    /// a Redis Cluster). Opening an existing queue with the same partition count is a no-op;
    /// another count is refused.
    Create(QueueCreateArgs),
    /// Remove a queue: every key of it and its registry entry, so sidecars stop serving it.
    /// Refused while it holds jobs or recurring schedules, unless --force. Stop its workers
    /// first.
    Rm(QueueRmArgs),
    /// Change a queue's settings: how long completed jobs (and their results) and dead jobs
    /// are kept.
    Set(QueueSetArgs),
}

#[derive(Debug, Args)]
pub(crate) struct QueueSetArgs {
    /// The queue's name.
    pub(crate) queue: String,
    /// Keep completed jobs and their results at most AGE and at most COUNT of them (per
    /// partition), e.g. "24h,10000"; "off" deletes them on completion (the default).
    #[arg(long, value_name = "AGE,COUNT|off")]
    pub(crate) keep_completed: Option<String>,
    /// Delete dead jobs beyond AGE and beyond COUNT of them (per partition), oldest first, e.g.
    /// "30d,100000"; "off" keeps them until retried or purged (the default). Every deletion is
    /// counted (`punctual_dead_trimmed_total`) and logged by the promoter that makes it.
    #[arg(long, value_name = "AGE,COUNT|off")]
    pub(crate) keep_dead: Option<String>,
    /// How long one priority level is worth ("60s", the default; "default" restores it): a
    /// due job goes before due jobs of a lower priority that became due up to this long per
    /// level before it, and waits at most this long per level behind later ones.
    #[arg(long, value_name = "DURATION|default")]
    pub(crate) priority_step: Option<String>,
    /// Keep an event log of every job change, about N entries per partition (an entry is one
    /// script call, which may carry many jobs), for `punctual watch`; "off" stops it.
    #[arg(long, value_name = "N|off")]
    pub(crate) events: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct QueueArgs {
    /// The queue's name.
    pub(crate) queue: String,
}

#[derive(Debug, Args)]
pub(crate) struct QueueCreateArgs {
    /// The queue's name.
    pub(crate) queue: String,
    /// How many partitions (1 to 1024); fixed for the queue's life.
    #[arg(long, default_value_t = 1)]
    pub(crate) partitions: u16,
}

#[derive(Debug, Args)]
pub(crate) struct QueueRmArgs {
    /// The queue's name.
    pub(crate) queue: String,
    /// Delete its jobs (scheduled, ready, running and dead) and recurring schedules too.
    #[arg(long)]
    pub(crate) force: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum DeadCommand {
    /// Send dead jobs back to scheduled, due now, with their attempts reset.
    Retry(DeadRetryArgs),
    /// Delete dead jobs.
    Purge(DeadPurgeArgs),
}

#[derive(Debug, Args)]
pub(crate) struct DeadRetryArgs {
    /// The queue's name.
    pub(crate) queue: String,
    /// Ids of dead jobs.
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub(crate) ids: Vec<String>,
    /// Every dead job.
    #[arg(long)]
    pub(crate) all: bool,
}

#[derive(Debug, Args)]
pub(crate) struct DeadPurgeArgs {
    /// The queue's name.
    pub(crate) queue: String,
    /// Ids of dead jobs.
    #[arg(required_unless_present_any = ["all", "older_than"], conflicts_with_all = ["all", "older_than"])]
    pub(crate) ids: Vec<String>,
    /// Every dead job.
    #[arg(long, conflicts_with = "older_than")]
    pub(crate) all: bool,
    /// Dead jobs that died at least this long ago.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub(crate) older_than: Option<Duration>,
}

#[derive(Debug, Args)]
pub(crate) struct WebArgs {
    /// Where to listen.
    #[arg(
        long,
        value_name = "ADDR",
        default_value = "127.0.0.1:7474",
        env = "PUNCTUAL_WEB_ADDR"
    )]
    pub(crate) addr: SocketAddr,
    #[command(flatten)]
    pub(crate) site: SiteArgs,
}

/// Who may use the dashboard and the HTTP API, and what they may do.
#[derive(Debug, Args, Default)]
pub(crate) struct SiteArgs {
    /// Serve reads only: every action and API write is refused (403 read_only).
    #[arg(long)]
    pub(crate) read_only: bool,
    /// Require `Authorization: Bearer TOKEN`, TOKEN read from the environment variable VAR
    /// (the dashboard asks for it once per browser tab).
    #[arg(long, value_name = "VAR")]
    pub(crate) token_env: Option<String>,
    /// Require HTTP basic auth, `user:password` read from the environment variable VAR.
    #[arg(long, value_name = "VAR", conflicts_with = "token_env")]
    pub(crate) basic_auth_env: Option<String>,
    /// Serve without authentication on any address (behind a proxy that authenticates).
    #[arg(long, conflicts_with_all = ["token_env", "basic_auth_env"])]
    pub(crate) no_auth: bool,
}
