//! The binary's command line. Every setting is a `--flag` and an environment variable; the
//! commented `.env.example` at the repository root lists them.

use std::net::SocketAddr;

use clap::{Args, Parser, Subcommand, ValueEnum};
use keygate_shared::Environment;

use crate::cli::ClientCommand;

#[derive(Debug, Parser)]
#[command(
    name = "keygate",
    version,
    about = "keygate: API keys issued here, verified at the edge"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the control-plane API (creates and migrates the database on first start).
    Serve(ServeConfig),
    /// Create the first admin and print its token once (what `serve` does on an empty database).
    Bootstrap(SetupArgs),
    #[command(flatten)]
    Client(ClientCommand),
}

#[derive(Debug, Args)]
pub struct DatabaseArgs {
    /// `sqlite://PATH` (created on first start) or `postgres://USER@HOST/DB`.
    #[arg(long, env = "DATABASE_URL", default_value = "sqlite://keygate.db")]
    pub database_url: String,
    /// Connections in the pool (PostgreSQL; SQLite readers). SQLite has one writer.
    #[arg(long, env = "KEYGATE_DB_MAX_CONNECTIONS", default_value_t = 16)]
    pub max_connections: u32,
}

#[derive(Debug, Args)]
pub struct IssuerArgs {
    /// The prefix of the API keys issued here; the edge's KEYGATE_ISSUER_PREFIX must match.
    #[arg(long, env = "KEYGATE_ISSUER_PREFIX", default_value = "kg")]
    pub key_prefix: String,
    /// The prefix of control-plane tokens; must differ from the key prefix.
    #[arg(long, env = "KEYGATE_TOKEN_PREFIX", default_value = "kgcp")]
    pub token_prefix: String,
    /// The environment tag of control-plane tokens (production tokens read `kgcp_live_...`).
    #[arg(long, env = "KEYGATE_ENVIRONMENT", default_value = "production", value_parser = parse_environment)]
    pub environment: Environment,
}

#[derive(Debug, Args)]
pub struct ServeConfig {
    /// Address to listen on.
    #[arg(long, env = "KEYGATE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub setup: SetupArgs,
    /// Largest request body accepted, in bytes.
    #[arg(long, env = "KEYGATE_MAX_BODY_BYTES", default_value_t = 64 * 1024)]
    pub max_body_bytes: usize,
    /// How long in-flight requests may take to finish after SIGTERM/SIGINT.
    #[arg(long, env = "KEYGATE_SHUTDOWN_GRACE_SECONDS", default_value_t = 30)]
    pub shutdown_grace_seconds: u64,
    /// `text` for people, `json` for log pipelines.
    #[arg(long, env = "KEYGATE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// What `serve` and `bootstrap` share: the database, the key formats, the first admin.
#[derive(Debug, Args)]
pub struct SetupArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub issuer: IssuerArgs,
    /// The email of the first admin, created on an empty database.
    #[arg(
        long,
        env = "KEYGATE_BOOTSTRAP_EMAIL",
        default_value = "admin@localhost"
    )]
    pub bootstrap_email: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

pub(crate) fn parse_environment(name: &str) -> Result<Environment, String> {
    Environment::from_name(name)
        .ok_or_else(|| format!("{name:?} is not production, staging or development"))
}
