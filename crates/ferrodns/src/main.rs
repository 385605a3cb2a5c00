//! The `ferrodns` binary: `serve` runs the server, `zone`/`rrset`/`token` are
//! API clients, and `check-zone` checks master files. This is the only place that uses
//! `anyhow` and installs the log subscriber.

mod client;

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use ferrodns::zonefiles::{zone_file_paths, ZoneFile};
use ferrodns::{config, App, Listeners};
use ferrodns_zone::load_zone_file_as;
use tokio::sync::watch;
use tracing_subscriber::filter::FilterExt;
use tracing_subscriber::layer::{Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

#[derive(Parser, Debug)]
#[command(name = "ferrodns", version, about = "Authoritative DNS server with a zone API")]
struct Cli {
    /// Log level: error, warn, info, debug, trace, or a tracing filter [default: info].
    #[arg(long = "log-level", env = "FERRODNS_LOG_LEVEL", global = true)]
    log_level: Option<String>,
    /// Log format: text or json.
    #[arg(long = "log-format", env = "FERRODNS_LOG_FORMAT", global = true, default_value = "text")]
    log_format: LogFormat,
    #[command(flatten)]
    client: client::ClientArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the server.
    Serve(Box<config::ServeArgs>),
    /// Manage zones through the API.
    #[command(subcommand)]
    Zone(client::ZoneCommand),
    /// Manage RRsets through the API.
    #[command(subcommand)]
    Rrset(client::RRsetCommand),
    /// Manage API tokens through the API.
    #[command(subcommand)]
    Token(client::TokenCommand),
    /// Show the cluster: control nodes (role, leader, term), each secondary's lag per zone.
    Status(client::StatusArgs),
    /// Check master files as `serve --zone-file` would load them, and print every problem.
    CheckZone {
        /// Let the files use $INCLUDE.
        #[arg(long = "allow-include")]
        allow_include: bool,
        /// Zone files to check; NAME=FILE loads FILE as zone NAME (for files without $ORIGIN).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

fn init_logging(level: &str, format: LogFormat) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(level).with_context(|| format!("bad --log-level '{level}'"))?;
    // Colours only for a person at a terminal, not in a journal or a log file.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    // Each call site writes a bounded number of lines (ferrodns::logging).
    let limit = ferrodns::logging::RateLimit::default();
    let layer = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(ansi);
    match format {
        LogFormat::Text => tracing_subscriber::registry().with(layer.with_filter(filter.and(limit.clone()))).init(),
        LogFormat::Json => {
            tracing_subscriber::registry().with(layer.json().with_filter(filter.and(limit.clone()))).init()
        }
    }
    limit.start_reporter();
    Ok(())
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve(*args, cli.log_level, cli.log_format),
        Command::CheckZone { allow_include, files } => {
            zone_file_paths(&files).and_then(|files| check_zone(&files, allow_include))
        }
        Command::Zone(command) => client::zone(&cli.client, command),
        Command::Rrset(command) => client::rrset(&cli.client, command),
        Command::Token(command) => client::token(&cli.client, command),
        Command::Status(args) => client::status(&cli.client, args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ferrodns: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn check_zone(files: &[ZoneFile], allow_include: bool) -> anyhow::Result<()> {
    let mut failed = 0;
    for ZoneFile { path: file, origin } in files {
        match load_zone_file_as(file, origin.as_ref(), allow_include) {
            Ok(loaded) => {
                for warning in &loaded.warnings {
                    println!("warning: {warning}");
                }
                println!(
                    "{}: zone {} serial {} loaded, {} records",
                    file.display(),
                    loaded.zone.apex(),
                    loaded.zone.serial().0,
                    loaded.zone.record_count()
                );
            }
            Err(e) => {
                failed += 1;
                for problem in &e.problems {
                    println!("{problem}");
                }
            }
        }
    }
    if failed > 0 {
        bail!("{failed} of {} zone files have errors", files.len());
    }
    Ok(())
}

fn serve(args: config::ServeArgs, log_level: Option<String>, log_format: LogFormat) -> anyhow::Result<()> {
    ferrodns_zone::memory::limit_arenas();
    let settings = args.resolve()?;
    let level = log_level.or(settings.file_log_level.clone()).unwrap_or_else(|| "info".into());
    init_logging(&level, log_format)?;
    let listeners = Listeners::bind(&settings)?;
    // The async threads (TCP, the API, replication, HA, and the database
    // threads they start) run at a lower priority than the UDP workers, so
    // that on a shared core a burst of control-plane work waits for queries
    // rather than the other way round.
    let async_nice = settings.async_nice;
    let workers = settings.udp_workers.clamp(1, 4);
    let app = App::build(settings)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .on_thread_start(move || lower_thread_priority(async_nice))
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let (stop, shutdown) = watch::channel(false);
        // Polled here, on the main thread, so that the UDP workers it starts
        // keep this thread's priority rather than the async threads' lower one.
        let run = app.run(listeners, shutdown);
        tokio::pin!(run);
        tokio::select! {
            // The server stopped on its own: an error at start.
            result = &mut run => result,
            signal = wait_for_signal() => {
                signal?;
                let _ = stop.send(true);
                run.await
            }
        }
    })
}

/// Raises the calling thread's nice value by `by` (Linux applies nice to
/// one thread). Lowering one's own priority needs no privilege; failure only
/// leaves the default.
fn lower_thread_priority(by: i32) {
    if by > 0 {
        // SAFETY: nice() has no preconditions; its result is only advisory here.
        unsafe {
            libc::nice(by);
        }
    }
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    tokio::select! {
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }
    Ok(())
}
