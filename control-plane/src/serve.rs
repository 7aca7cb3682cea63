//! `keygate serve` and `keygate bootstrap`: open (and migrate) the database, create the first
//! admin if there is none, and serve until SIGTERM or Ctrl-C, letting requests in flight finish.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use tracing_subscriber::EnvFilter;

use crate::Clock;
use crate::config::{IssuerArgs, LogFormat, ServeConfig, SetupArgs};
use crate::http::{AppState, Settings, app};
use crate::store::{Db, users};

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

/// Creates the first admin if the database has none. The token goes to stdout, once; logs go to
/// stderr and never carry it.
async fn bootstrap_admin(db: &Db, settings: &Settings, email: &str) -> Result<bool, String> {
    let now = Clock::system().now();
    let created = users::bootstrap(db, email, &settings.token_format, settings.environment, now)
        .await
        .map_err(|error| format!("bootstrap failed: {error}"))?;
    let Some((user, token)) = created else {
        return Ok(false);
    };
    println!(
        "keygate: created the first admin {} ({}). Its token, shown only this once:\n\n    {}\n",
        user.email,
        user.user_id,
        token.token.expose_secret()
    );
    Ok(true)
}

pub(crate) async fn bootstrap(args: SetupArgs) -> ExitCode {
    init_logging(LogFormat::Text);
    let outcome = async {
        let settings = settings(&args.issuer, 0)?;
        let db = Db::connect(&args.database.database_url, 1)
            .await
            .map_err(|error| error.to_string())?;
        let created = bootstrap_admin(&db, &settings, &args.bootstrap_email).await;
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
    let settings = settings(&setup.issuer, config.max_body_bytes)?;
    let db = Db::connect(&setup.database.database_url, setup.database.max_connections)
        .await
        .map_err(|error| error.to_string())?;
    tracing::info!(backend = db.backend().name(), "database ready");
    bootstrap_admin(&db, &settings, &setup.bootstrap_email).await?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|error| format!("cannot listen on {}: {error}", config.listen))?;
    let address = listener.local_addr().map_err(|error| error.to_string())?;
    tracing::info!(%address, "keygate control plane listening");
    let state = AppState::new(db.clone(), settings, Clock::system());
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
    db.close().await;
    tracing::info!("keygate control plane stopped");
    outcome
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
