//! The `punctual` binary: a thin layer over the library.
//!
//! - `cli`: every command and flag (clap).
//! - `input`: durations, RFC 3339 times and JSON data from the command line.
//! - `commands`: the one-shot operator commands (schedule, import, show, ls, stats, dead, ...).
//! - `sidecar`: `promote`, the promoter as a process, with its metrics endpoint.
//! - `work`: `work --exec` / `--pipe`, a worker that runs commands for jobs and owns every
//!   process it starts (with `__supervise`, the process that ends them if the worker dies).
//! - `http`: the small responder behind `--metrics-addr`.
//! - `output`: how jobs and stats are printed, for people and as JSON.
//!
//! Exit status: 0 success, 1 a runtime failure (Redis unreachable or refusing, job not found),
//! 2 bad input (nothing was written). Errors are one line on stderr.
//!
//! Output goes through `outln!`/`out!` and `errln!`, never `println!`/`eprintln!`, which
//! panic when the other end of the pipe is gone (`punctual ls q | head -1`): a reader that
//! went away ends the command quietly with status 0 (the way `watch` ends), and a lost
//! stderr loses the message, not the process.

/// `println!` for a command's output (see the module docs): [`output::emit`].
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::output::emit(&format!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` for a command's output: [`output::emit`].
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::output::emit(&format!($($arg)*))
    };
}

/// `eprintln!` that cannot panic: a message that cannot be written to stderr is dropped.
macro_rules! errln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

mod cli;
mod commands;
mod cron;
mod input;
mod limits;
mod output;
mod sidecar;
mod web;
mod work;

use std::process::ExitCode;

use clap::Parser;
use punctual::{Namespace, Queue, QueueConfig};
use tokio_util::sync::CancellationToken;

use crate::cli::{Cli, Command, LogFormat, ServerCheckArgs};

/// Kind given to jobs scheduled without one (`schedule`, `import`, `cron add`, the HTTP API).
pub(crate) const DEFAULT_KIND: &str = "json";

/// Why a command failed, and so which exit status it gets.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Bad input: exit status 2, nothing written.
    Input(String),
    /// Anything else: exit status 1.
    Runtime(String),
    /// What was awaited did not happen in time (`punctual wait`): exit status 3.
    TimedOut(String),
}

impl Failure {
    /// Classifies a library error: input errors are 2, Redis and the rest are 1.
    pub(crate) fn from_lib(e: punctual::Error, url: &str) -> Failure {
        use punctual::Error as E;
        match e {
            E::InThePast {
                at_ms,
                late_ms,
                tolerance_ms,
                ..
            } => {
                let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(at_ms);
                let late = std::time::Duration::from_millis(late_ms);
                let tolerance = std::time::Duration::from_millis(tolerance_ms);
                Failure::Input(format!(
                    "time {} is {} in the past by the redis server's clock (more than {} \
                     allowed); use --in 0s to run it now",
                    input::format_time(at),
                    input::format_duration(late),
                    input::format_duration(tolerance),
                ))
            }
            e if e.is_input() => Failure::Input(e.to_string()),
            E::Redis { op, source, .. } => {
                Failure::Runtime(format!("redis at {url}: {op} failed: {source}"))
            }
            E::OutOfMemory { .. } | E::PermissionDenied { .. } | E::AuthenticationFailed { .. } => {
                Failure::Runtime(format!("redis at {url}: {e}"))
            }
            other => Failure::Runtime(other.to_string()),
        }
    }

    fn exit_code(&self) -> u8 {
        match self {
            Failure::Input(_) => 2,
            Failure::Runtime(_) => 1,
            Failure::TimedOut(_) => 3,
        }
    }
}

/// The result of a command.
pub(crate) type CmdResult = Result<(), Failure>;

/// What every command needs: where Redis is and the namespace.
pub(crate) struct Ctx {
    pub(crate) url: String,
    pub(crate) redacted: String,
    pub(crate) config: QueueConfig,
}

impl Ctx {
    /// Connects to the namespace: one server, or a Redis Cluster (detected from the server,
    /// or named by a list of seed nodes).
    pub(crate) async fn namespace(&self) -> Result<Namespace, Failure> {
        Namespace::connect(&self.url, self.config.clone())
            .await
            .map_err(|e| self.fail(e))
    }

    /// Connects to one queue, creating it if it is new (validating its name first: no
    /// connection for bad input). For commands that write jobs; reads use
    /// [`Ctx::existing_queue`].
    pub(crate) async fn queue(&self, name: &str) -> Result<Queue, Failure> {
        punctual::keys::validate_name(name).map_err(|e| self.fail(e))?;
        let ns = self.namespace().await?;
        ns.queue(name).await.map_err(|e| self.fail(e))
    }

    /// An existing queue, found without writing anything; a queue that does not exist is a
    /// failure (exit status 1) that says so.
    pub(crate) async fn existing_queue(&self, name: &str) -> Result<Queue, Failure> {
        match self.maybe_queue(name).await? {
            Some(queue) => Ok(queue),
            None => Err(Failure::Runtime(format!(
                "no queue {name:?} in namespace {:?} at {}",
                self.config.prefix(),
                self.redacted
            ))),
        }
    }

    /// An existing queue, or `None`; nothing is written.
    pub(crate) async fn maybe_queue(&self, name: &str) -> Result<Option<Queue>, Failure> {
        punctual::keys::validate_name(name).map_err(|e| self.fail(e))?;
        let ns = self.namespace().await?;
        ns.existing_queue(name).await.map_err(|e| self.fail(e))
    }

    /// A library error as a failure naming the (redacted) URL.
    pub(crate) fn fail(&self, e: punctual::Error) -> Failure {
        Failure::from_lib(e, &self.redacted)
    }

    /// The start-up check of long-running commands: fatal problems (and eviction, unless
    /// allowed) refuse to start; the rest are warnings.
    pub(crate) async fn check_server(
        &self,
        ns: &Namespace,
        args: &ServerCheckArgs,
    ) -> Result<(), Failure> {
        let servers = ns.servers().await.map_err(|e| self.fail(e))?;
        let cluster = ns.is_cluster();
        for (node, info) in servers {
            tracing::info!(version = %info.version, node = %node, cluster, "connected to redis");
            // On a cluster, name the master that has the problem.
            let at = if cluster {
                format!("{} (master {node})", self.redacted)
            } else {
                self.redacted.clone()
            };
            for problem in info.problems() {
                let evicting = matches!(problem, punctual::ServerProblem::Evicting { .. });
                if problem.is_fatal() || (evicting && !args.allow_eviction) {
                    let hint = if evicting {
                        " (or start with --allow-eviction)"
                    } else {
                        ""
                    };
                    return Err(Failure::Runtime(format!("redis at {at}: {problem}{hint}")));
                }
                tracing::warn!(node = %node, "{problem}");
            }
        }
        Ok(())
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Supervise(args) = cli.command {
        // A plain blocking process: no runtime, no Redis, no logging set-up.
        return work::supervisor::main(args);
    }
    init_logging(&cli);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            errln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let mut config = QueueConfig::default().set_prefix(cli.prefix.clone());
    if cli.wait_replicas > 0 {
        config = config.set_durability(Some(punctual::Durability {
            replicas: cli.wait_replicas,
            timeout: cli.wait_timeout,
        }));
    }
    match tls_config(&cli) {
        Ok(Some(tls)) => config = config.set_tls(tls),
        Ok(None) => {}
        Err(message) => {
            errln!("error: {message}");
            return ExitCode::from(2);
        }
    }
    let url = cli.redis_url.join(",");
    let ctx = Ctx {
        redacted: punctual::redact_url(&url),
        url,
        config,
    };
    if let Err(e) = punctual::keys::validate_name(&cli.prefix) {
        errln!("error: --prefix: {e}");
        return ExitCode::from(2);
    }
    match runtime.block_on(run(&ctx, cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            let (Failure::Input(message) | Failure::Runtime(message) | Failure::TimedOut(message)) =
                &failure;
            errln!("error: {message}");
            ExitCode::from(failure.exit_code())
        }
    }
}

/// The certificates named by --tls-ca-cert, --tls-cert and --tls-key, read now so that a
/// missing file is an input error before anything connects.
fn tls_config(cli: &Cli) -> Result<Option<punctual::TlsConfig>, String> {
    let read = |flag: &str, path: &std::path::Path| {
        std::fs::read(path).map_err(|e| format!("{flag}: cannot read {}: {e}", path.display()))
    };
    let mut tls = punctual::TlsConfig::default();
    let mut any = false;
    if let Some(path) = &cli.tls_ca_cert {
        tls = tls.set_root_certificate(read("--tls-ca-cert", path)?);
        any = true;
    }
    if let (Some(cert), Some(key)) = (&cli.tls_cert, &cli.tls_key) {
        tls = tls.set_client_certificate(read("--tls-cert", cert)?, read("--tls-key", key)?);
        any = true;
    }
    Ok(any.then_some(tls))
}

async fn run(ctx: &Ctx, command: Command) -> CmdResult {
    match command {
        Command::Promote(args) => sidecar::promote(ctx, args).await,
        Command::Web(args) => web::run(ctx, args).await,
        Command::Work(args) => work::work(ctx, args).await,
        Command::Supervise(_) => Err(Failure::Input("__supervise is internal".to_owned())),
        Command::Schedule(args) => commands::schedule(ctx, *args).await,
        Command::Import(args) => commands::import(ctx, args).await,
        Command::Show(args) => commands::show(ctx, args).await,
        Command::Cancel(args) => commands::cancel(ctx, args).await,
        Command::Wait(args) => commands::wait(ctx, args).await,
        Command::Reschedule(args) => commands::reschedule(ctx, args).await,
        Command::Watch(args) => commands::watch(ctx, args).await,
        Command::Ls(args) => commands::ls(ctx, args).await,
        Command::Stats(args) => commands::stats(ctx, args).await,
        Command::Pause(args) => commands::pause(ctx, args, true).await,
        Command::Resume(args) => commands::pause(ctx, args, false).await,
        Command::Dead(command) => commands::dead(ctx, command).await,
        Command::Queue(command) => commands::queue(ctx, command).await,
        Command::Cron(command) => cron::run(ctx, command).await,
        Command::Limit(command) => limits::run(ctx, command).await,
    }
}

/// Logs go to stderr; `RUST_LOG` wins over `-v`/`-q`.
fn init_logging(cli: &Cli) {
    let level = match (cli.quiet, cli.verbose) {
        (2.., _) => "off",
        (1, _) => "error",
        (0, 0) => "info",
        (0, 1) => "debug",
        (0, _) => "trace",
    };
    // The redis crate's own cluster recovery logs (every reconnect attempt at WARN) are
    // shown with -v; our own lines say what failed.
    let level = if cli.verbose == 0 && cli.quiet == 0 {
        format!("{level},redis=error")
    } else {
        level.to_owned()
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        // A log line that cannot be written (stderr is a pipe whose reader went away) is
        // dropped. By default the failure is reported with `eprintln!`, which panics when
        // stderr is gone: the task that logged died, and at SIGTERM that was the one that
        // stops the process, which then ran on.
        .log_internal_errors(false);
    match cli.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// A token cancelled by the first SIGTERM or SIGINT.
pub(crate) fn shutdown_on_signals() -> Result<CancellationToken, Failure> {
    use tokio::signal::unix::{signal, SignalKind};
    let token = CancellationToken::new();
    let mut term = signal(SignalKind::terminate())
        .map_err(|e| Failure::Runtime(format!("cannot listen for SIGTERM: {e}")))?;
    let mut int = signal(SignalKind::interrupt())
        .map_err(|e| Failure::Runtime(format!("cannot listen for SIGINT: {e}")))?;
    let stop = token.clone();
    tokio::spawn(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        // Stop first, then say so: nothing that logging does may keep the process running.
        stop.cancel();
        tracing::info!(signal = name, "shutting down");
    });
    Ok(token)
}
