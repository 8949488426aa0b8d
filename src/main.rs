//! The `hale` command: Envoy's flags where Envoy has them, then
//! [`hale::start`] and a wait for SIGTERM, SIGINT or `/quitquitquit`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, ValueEnum};
use hale::config::{self, Overrides};
use hale::server::{DEFAULT_DRAIN_TIME, Options, Stop, default_concurrency};

// A proxy allocates and frees small buffers per request from every worker;
// mimalloc's thread-local free lists make that cheaper than glibc's malloc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// hale: a reverse proxy that reads Envoy's v3 configuration and tells the
/// truth about the health of what is behind it, and about its own.
#[derive(Debug, Parser)]
#[command(name = "hale", version, about, long_about = None)]
struct Cli {
    /// The Envoy v3 bootstrap to run (YAML, or JSON by a .json extension).
    #[arg(
        short = 'c',
        long = "config-path",
        visible_alias = "config",
        value_name = "FILE"
    )]
    config_path: PathBuf,

    /// `serve` runs; `validate` checks the file, prints the outcome and exits.
    #[arg(long, value_enum, default_value_t = Mode::Serve)]
    mode: Mode,

    /// Data-path worker threads (default: the CPUs this process may run on).
    #[arg(long)]
    concurrency: Option<usize>,

    /// trace, debug, info, warning (warn), error, critical or off.
    #[arg(short = 'l', long = "log-level", default_value = "info")]
    log_level: String,

    /// Longest a shutdown takes, in seconds: settle, then in-flight requests.
    #[arg(long = "drain-time-s", value_name = "SECONDS")]
    drain_time_s: Option<u64>,

    /// hale's own: how long listeners keep accepting after SIGTERM while
    /// readiness already fails (default: 5, or a quarter of the drain time).
    #[arg(long = "drain-settle-s", value_name = "SECONDS")]
    drain_settle_s: Option<f64>,

    /// After binding, write the admin's host:port to this file.
    #[arg(long = "admin-address-path", value_name = "FILE")]
    admin_address_path: Option<PathBuf>,

    /// Overrides node.cluster of the bootstrap.
    #[arg(long = "service-cluster")]
    service_cluster: Option<String>,

    /// Overrides node.id of the bootstrap.
    #[arg(long = "service-node")]
    service_node: Option<String>,

    /// hale: do not reload when the config file changes (SIGHUP and
    /// `POST /reload` still reload it).
    #[arg(long = "no-watch-config")]
    no_watch_config: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    Serve,
    Validate,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = init_logging(&cli.log_level) {
        eprintln!("hale: {e:#}");
        return ExitCode::from(1);
    }
    let overrides = Overrides {
        service_node: cli.service_node.clone(),
        service_cluster: cli.service_cluster.clone(),
    };
    let loader = config::Loader::default();
    let bootstrap = match loader.load(&cli.config_path, &overrides) {
        Ok(b) => b,
        Err(errors) => {
            eprintln!(
                "hale: configuration '{}' is invalid ({} error{}):",
                cli.config_path.display(),
                errors.0.len(),
                if errors.0.len() == 1 { "" } else { "s" }
            );
            for e in errors.iter() {
                eprintln!("  {e}");
            }
            return ExitCode::from(1);
        }
    };
    if cli.mode == Mode::Validate {
        println!("configuration '{}' OK", cli.config_path.display());
        return ExitCode::SUCCESS;
    }
    match serve(&cli, bootstrap, loader) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("hale: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn serve(cli: &Cli, bootstrap: config::Bootstrap, loader: config::Loader) -> anyhow::Result<()> {
    let options = Options {
        config_path: cli.config_path.clone(),
        concurrency: cli.concurrency.unwrap_or_else(default_concurrency).max(1),
        log_level: cli.log_level.clone(),
        drain_time: cli
            .drain_time_s
            .map_or(DEFAULT_DRAIN_TIME, Duration::from_secs),
        drain_settle: match cli.drain_settle_s {
            None => None,
            Some(s) => Some(
                Duration::try_from_secs_f64(s)
                    .map_err(|e| anyhow::anyhow!("invalid --drain-settle-s {s}: {e}"))?,
            ),
        },
        admin_address_path: cli.admin_address_path.clone(),
        service_cluster: cli.service_cluster.clone(),
        service_node: cli.service_node.clone(),
        watch_config: !cli.no_watch_config,
        config_loader: loader,
    };
    // Signals are watched from before startup: a SIGTERM while health
    // checks warm up drains (there is nothing to drain yet) instead of
    // killing the process.
    let stop = Stop::default();
    let hangups = watch_signals(stop.clone())?;
    let running = hale::server::start_with_stop(bootstrap, &options, stop.clone())?;
    let reload = running.reload.clone();
    std::thread::Builder::new()
        .name("hale-sighup".into())
        .spawn(move || {
            while hangups.recv().is_ok() {
                reload.trigger("SIGHUP");
            }
        })
        .context("cannot start the SIGHUP thread")?;
    if running.lifecycle.phase() == hale::lifecycle::Phase::Live {
        for (name, addr) in &running.listeners {
            tracing::info!(listener = %name, address = %addr, "listening");
        }
    }
    if let Some(admin) = running.admin {
        tracing::info!(address = %admin, "admin listening");
    }

    let quit = running.quit_requested();
    let waiter = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the signal runtime")?;
    waiter.block_on(async {
        tokio::select! {
            () = stop.drain.cancelled() => {}
            () = quit.cancelled() => stop.drain("/quitquitquit"),
        }
    });
    let why = stop.reason.get().copied().unwrap_or("shutdown");
    tracing::info!(reason = why, "shutting down");
    running.shutdown();
    running.wait();
    Ok(())
}

/// Starts the drain on SIGTERM or SIGINT and cuts it short on a second
/// one, from a thread of its own; the handlers are installed before this
/// returns. Each SIGHUP before the drain comes out of the receiver (a
/// reload; one that arrives while hale starts waits for it).
fn watch_signals(stop: Stop) -> anyhow::Result<std::sync::mpsc::Receiver<()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the signal runtime")?;
    let (mut term, mut int, mut hup) = rt
        .block_on(async {
            Ok::<_, std::io::Error>((
                signal(SignalKind::terminate())?,
                signal(SignalKind::interrupt())?,
                signal(SignalKind::hangup())?,
            ))
        })
        .context("cannot install signal handlers")?;
    let (hangups, hangup_rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("hale-signals".into())
        .spawn(move || {
            rt.block_on(async {
                loop {
                    tokio::select! {
                        _ = term.recv() => break stop.drain("SIGTERM"),
                        _ = int.recv() => break stop.drain("SIGINT"),
                        _ = hup.recv() => {
                            let _ = hangups.send(());
                        }
                        () = stop.drain.cancelled() => break,
                    }
                }
                drop(hangups);
                loop {
                    tokio::select! {
                        _ = term.recv() => break,
                        _ = int.recv() => break,
                        // No reload once draining.
                        _ = hup.recv() => {}
                        () = stop.now.cancelled() => return,
                    }
                }
                tracing::warn!("second signal: stopping at once");
                stop.now.cancel();
            });
        })
        .context("cannot start the signal thread")?;
    Ok(hangup_rx)
}

fn init_logging(level: &str) -> anyhow::Result<()> {
    let directive = match level.to_ascii_lowercase().as_str() {
        "warning" => "warn".to_string(),
        "critical" => "error".to_string(),
        other @ ("trace" | "debug" | "info" | "warn" | "error" | "off") => other.to_string(),
        other => anyhow::bail!(
            "invalid --log-level '{other}': expected trace, debug, info, warning, error, critical or off"
        ),
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&directive))
        .context("invalid log filter")?;
    // Colours only for a person at a terminal, not for log files.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .init();
    Ok(())
}
