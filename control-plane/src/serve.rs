//! `keygate serve` and `keygate bootstrap`: open (and migrate) the database, create the first
//! admin if there is none, and serve until SIGTERM or Ctrl-C, letting requests in flight finish.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use tracing_subscriber::EnvFilter;

use crate::Clock;
use crate::config::{IssuerArgs, LogFormat, ServeConfig, SetupArgs, SyncCommand};
use crate::http::{AppState, Settings, app};
use crate::store::{Db, usage, users};
use crate::sync::{Jitter, KvSink, Pusher, SyncHandle};

fn init_logging(format: LogFormat) {
    let filter =
        EnvFilter::try_from_env("KEYGATE_LOG").unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

fn settings(issuer: &IssuerArgs, max_body_bytes: usize) -> Result<Settings, String> {
    Settings::new(
        &issuer.key_prefix,
        &issuer.token_prefix,
        issuer.environment,
        max_body_bytes,
    )
}

/// Where the first admin's token goes: a new file only its owner can read, or the terminal of
/// an explicit `keygate bootstrap`. Never a log stream or a pipe.
enum TokenOut {
    File(PathBuf, std::fs::File),
    Terminal,
}

impl TokenOut {
    /// The file, created now (before any admin exists), so a path that cannot be used fails
    /// before the database is touched.
    fn file(path: &Path) -> Result<Self, String> {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        options
            .open(path)
            .map(|file| Self::File(path.to_owned(), file))
            .map_err(|error| format!("cannot create the token file {}: {error}", path.display()))
    }

    /// Nothing was created: an empty file is not left behind.
    fn unused(self) {
        if let Self::File(path, file) = self {
            drop(file);
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Creates the first admin if the database has none, and hands its token to `out`, once.
async fn bootstrap_admin(
    db: &Db,
    settings: &Settings,
    email: &str,
    out: TokenOut,
) -> Result<bool, String> {
    let now = Clock::system().now();
    let created = users::bootstrap(db, email, &settings.token_format, settings.environment, now)
        .await
        .map_err(|error| format!("bootstrap failed: {error}"));
    let (user, token) = match created {
        Ok(Some(created)) => created,
        Ok(None) => {
            out.unused();
            return Ok(false);
        }
        Err(error) => {
            out.unused();
            return Err(error);
        }
    };
    match out {
        TokenOut::File(path, mut file) => {
            use std::io::Write as _;
            writeln!(file, "{}", token.token.expose_secret())
                .and_then(|()| file.sync_all())
                .map_err(|error| {
                    format!(
                        "the first admin {} was created, but its token could not be written to {}: {error}; revoke it and issue another",
                        user.user_id,
                        path.display()
                    )
                })?;
            tracing::info!(
                user_id = %user.user_id,
                path = %path.display(),
                "created the first admin; its token is in the file (owner-only)"
            );
        }
        TokenOut::Terminal => println!(
            "keygate: created the first admin {} ({}). Its token, shown only this once:\n\n    {}\n",
            user.email,
            user.user_id,
            token.token.expose_secret()
        ),
    }
    Ok(true)
}

pub(crate) async fn bootstrap(args: SetupArgs) -> ExitCode {
    init_logging(LogFormat::Text);
    let outcome = async {
        let out = match &args.bootstrap_token_file {
            Some(path) => TokenOut::file(path)?,
            None if std::io::stdout().is_terminal() => TokenOut::Terminal,
            None => {
                return Err(
                    "stdout is not a terminal: pass --bootstrap-token-file PATH (the token never goes to a pipe or a log)"
                        .to_owned(),
                );
            }
        };
        let settings = settings(&args.issuer, 0)?;
        let db = match Db::connect(&args.database.database_url, 1).await {
            Ok(db) => db,
            Err(error) => {
                out.unused();
                return Err(error.to_string());
            }
        };
        let created = bootstrap_admin(&db, &settings, &args.bootstrap_email, out).await;
        db.close().await;
        created
    }
    .await;
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("keygate: this database already has its first admin; nothing to do");
            ExitCode::from(1)
        }
        Err(message) => {
            eprintln!("keygate: {message}");
            ExitCode::from(2)
        }
    }
}

pub(crate) async fn serve(config: ServeConfig) -> ExitCode {
    init_logging(config.log_format);
    match run(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            tracing::error!("{message}");
            ExitCode::from(2)
        }
    }
}

async fn run(config: ServeConfig) -> Result<(), String> {
    let setup = &config.setup;
    let read = |file: &Option<PathBuf>| {
        file.as_ref()
            .map(|path| {
                std::fs::read_to_string(path)
                    .map_err(|error| format!("cannot read {}: {error}", path.display()))
            })
            .transpose()
    };
    let jwks = read(&config.assertion_jwks_file)?;
    let scanning_keys = read(&config.secret_scanning_keys_file)?;
    let settings = settings(&setup.issuer, config.max_body_bytes)?
        .with_usage(
            config.ingest_token.as_ref().map(|token| token.0.as_str()),
            config.log_retention_days,
        )
        .with_metrics_token(config.metrics_token.as_ref().map(|token| token.0.as_str()))
        .with_ui(config.ui.settings())
        .with_assertion_jwks(jwks.as_deref())?
        .with_secret_scanning(scanning_keys.as_deref())?
        .with_verify_cache_ms(config.verify_cache_ms)?;
    let db = Db::connect(&setup.database.database_url, setup.database.max_connections)
        .await
        .map_err(|error| error.to_string())?;
    tracing::info!(backend = db.backend().name(), "database ready");
    match &setup.bootstrap_token_file {
        Some(path) => {
            bootstrap_admin(
                &db,
                &settings,
                &setup.bootstrap_email,
                TokenOut::file(path)?,
            )
            .await?;
        }
        None if !users::bootstrapped(&db)
            .await
            .map_err(|error| error.to_string())? =>
        {
            tracing::warn!(
                "this database has no admin yet: run `keygate bootstrap` on a terminal, or start with --bootstrap-token-file PATH"
            );
        }
        None => {}
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|error| format!("cannot listen on {}: {error}", config.listen))?;
    let address = listener.local_addr().map_err(|error| error.to_string())?;
    tracing::info!(%address, "keygate control plane listening");
    let sink = config.sync.sink()?;
    let signer = sink.as_ref().map(|_| config.sync.signer()).transpose()?;
    let feed = config.sync.feed()?;
    let handle = SyncHandle::new(
        sink.as_ref().map(KvSink::describe),
        feed.as_ref().map(|feed| feed.describe().to_owned()),
    );
    let (stop_pusher, stopped) = tokio::sync::watch::channel(false);
    let pusher = match sink.zip(signer) {
        Some((sink, signer)) => {
            tracing::info!(kid = signer.kid(), "records are signed");
            match &feed {
                Some(feed) => tracing::info!(
                    feed = feed.describe(),
                    "records go to the change feed first"
                ),
                None => tracing::info!(
                    "no change feed (KEYGATE_FEED_URL): the edge learns of changes from KV alone"
                ),
            }
            let pusher = Pusher::new(
                db.clone(),
                sink,
                signer,
                config.sync.push_settings(),
                handle.clone(),
                Clock::system(),
                Jitter::os(),
            )
            .with_feed(feed);
            Some(tokio::spawn(pusher.run(stopped)))
        }
        None => {
            tracing::warn!(
                "no KV sink configured (--kv-sink): key changes wait in the outbox and do not \
                 reach the edge"
            );
            None
        }
    };
    let retention = tokio::spawn(purge_old_logs(
        db.clone(),
        config.log_retention_days,
        stop_pusher.subscribe(),
    ));
    let state = AppState::with_sync(db.clone(), settings, Clock::system(), handle);
    let grace = Duration::from_secs(config.shutdown_grace_seconds);
    let server = axum::serve(
        listener,
        app(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown_signal());
    // Once a signal arrives, in-flight requests get `grace` to finish.
    let outcome = tokio::select! {
        outcome = server => outcome.map_err(|error| error.to_string()),
        () = async { shutdown_signal().await; tokio::time::sleep(grace).await } => {
            Err(format!("requests still running {}s after the shutdown signal", grace.as_secs()))
        }
    };
    // The pusher finishes the round it is in (its requests time out within half a lease).
    let _ = stop_pusher.send(true);
    if let Some(pusher) = pusher {
        let _ = pusher.await;
    }
    let _ = retention.await;
    db.close().await;
    tracing::info!("keygate control plane stopped");
    outcome
}

/// Hourly, and once at start: deletes request-log events older than the retention period.
async fn purge_old_logs(db: Db, days: u32, mut stop: tokio::sync::watch::Receiver<bool>) {
    while !*stop.borrow() {
        let cutoff_ms = (Clock::system().now() - i64::from(days) * 86_400) * 1000;
        match usage::purge(&db, cutoff_ms).await {
            Ok(0) => {}
            Ok(purged) => tracing::info!(purged, days, "request log: old events deleted"),
            Err(error) => tracing::warn!("request log retention: {error}"),
        }
        tokio::select! {
            _ = stop.changed() => {}
            () = tokio::time::sleep(Duration::from_secs(3600)) => {}
        }
    }
}

/// `keygate sync [--full]`: drains the outbox (after queuing everything again, with `--full`)
/// and prints what it did.
pub(crate) async fn sync_once(command: SyncCommand) -> ExitCode {
    init_logging(LogFormat::Text);
    let outcome = async {
        let sink = command
            .sync
            .sink()?
            .ok_or("keygate sync needs a sink: --kv-sink cloudflare or --kv-sink wrangler")?;
        let db = Db::connect(&command.database.database_url, 2)
            .await
            .map_err(|error| error.to_string())?;
        let describe = sink.describe();
        let pusher = Pusher::new(
            db.clone(),
            sink,
            command.sync.signer()?,
            command.sync.push_settings(),
            SyncHandle::new(Some(describe.clone()), None),
            Clock::system(),
            Jitter::os(),
        )
        .with_feed(command.sync.feed()?);
        let give_up = Duration::from_secs(command.timeout_seconds);
        let report = if command.full {
            pusher.rebuild(give_up, 8).await
        } else {
            pusher.drain(give_up, 8).await
        };
        db.close().await;
        let report = report.map_err(|error| error.to_string())?;
        println!(
            "keygate sync: {} records written to {describe} in {} bulk requests, {:.1}s{}",
            report.records_pushed,
            report.put_requests,
            report.elapsed.as_secs_f64(),
            if command.full {
                format!(
                    " ({} queued for the rebuild, {} repairs)",
                    report.queued_again, report.repairs
                )
            } else {
                String::new()
            }
        );
        Ok::<_, String>(())
    }
    .await;
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("keygate sync: {message}");
            ExitCode::from(1)
        }
    }
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(_) => return interrupt.await.unwrap_or_default(),
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    interrupt.await.unwrap_or_default();
}
