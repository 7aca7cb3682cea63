//! The binary's command line. Every setting is a `--flag` and an environment variable; the
//! commented `.env.example` at the repository root lists them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use keygate_shared::Environment;

use crate::cli::ClientCommand;
use crate::sync::{
    ApiToken, CloudflareKv, DEFAULT_BASE_URL, FeedToken, FeedWriter, PushSettings, RecordSigner,
    Sink, WranglerKv,
};

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
    Serve(Box<ServeConfig>),
    /// Create the first admin and print its token once (what `serve` does on an empty database).
    Bootstrap(SetupArgs),
    /// Push the pending snapshot records to KV and exit; `--full` rebuilds the whole snapshot.
    Sync(SyncCommand),
    /// The edge's identity-assertion signing keys.
    #[command(subcommand)]
    AssertionKey(AssertionKeyCommand),
    /// The control plane's record signing keys (the edge trusts only records signed by one).
    #[command(subcommand)]
    RecordKey(RecordKeyCommand),
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
    #[command(flatten)]
    pub sync: SyncArgs,
    /// The token the edge's usage consumer presents to `POST /v1/usage/events` (long and random;
    /// it can do nothing else). Unset: usage ingest is refused.
    #[arg(long, env = "KEYGATE_INGEST_TOKEN", hide_env_values = true)]
    pub ingest_token: Option<SecretToken>,
    /// When set, `/metrics` answers only scrapers that send `Authorization: Bearer <token>` (long
    /// and random). Unset: `/metrics` is open, for a scraper on a private network.
    #[arg(long, env = "KEYGATE_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<SecretToken>,
    /// A file holding the JWKS origins verify the edge's identity assertions with (the public
    /// half of every key the edge may sign with: two during a rotation), served at
    /// `/.well-known/jwks.json`. Unset: that route answers 404.
    #[arg(long, env = "KEYGATE_ASSERTION_JWKS_FILE")]
    pub assertion_jwks_file: Option<PathBuf>,
    /// A file holding the public keys GitHub signs secret-scanning alerts with, as GitHub
    /// publishes them (`https://api.github.com/meta/public_keys/secret_scanning`). Unset:
    /// `POST /v1/secret-scanning/github` answers 404.
    #[arg(long, env = "KEYGATE_SECRET_SCANNING_KEYS_FILE")]
    pub secret_scanning_keys_file: Option<PathBuf>,
    /// Days the request log (`GET /v1/logs`) keeps events; hourly usage counts are kept.
    #[arg(long, env = "KEYGATE_LOG_RETENTION_DAYS", default_value_t = 30,
          value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub log_retention_days: u32,
    /// How long `POST /v1/verify` may use a token or key it read, in milliseconds: a change made
    /// on another replica is seen within it (one made on this replica at once). 0 reads the
    /// database on every call.
    #[arg(long, env = "KEYGATE_VERIFY_CACHE_MS", default_value_t = crate::http::DEFAULT_VERIFY_CACHE_MS,
          value_parser = clap::value_parser!(u32).range(0..=1_000))]
    pub verify_cache_ms: u32,
    #[command(flatten)]
    pub ui: UiArgs,
}

/// The dashboard (`/ui`).
#[derive(Debug, Args)]
pub struct UiArgs {
    /// A dashboard session ends after this many seconds without a request.
    #[arg(long, env = "KEYGATE_UI_IDLE_SECONDS", default_value_t = 1_800,
          value_parser = clap::value_parser!(u32).range(5..=86_400))]
    pub ui_idle_seconds: u32,
    /// ... and this many seconds after sign-in, however busy.
    #[arg(long, env = "KEYGATE_UI_SESSION_SECONDS", default_value_t = 43_200,
          value_parser = clap::value_parser!(u32).range(5..=604_800))]
    pub ui_session_seconds: u32,
    /// `secure`: the session cookie is `__Host-keygate_session`, sent over HTTPS only (put
    /// keygate behind TLS). `local`: `keygate_session` without `Secure`, for plain http on
    /// a development machine; `scripts/dev` uses it.
    #[arg(long, env = "KEYGATE_UI_COOKIE", value_enum, default_value_t = UiCookie::Secure)]
    pub ui_cookie: UiCookie,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum UiCookie {
    Secure,
    Local,
}

impl UiArgs {
    pub fn settings(&self) -> crate::http::UiSettings {
        crate::http::UiSettings {
            lifetimes: crate::store::sessions::Lifetimes {
                idle_seconds: i64::from(self.ui_idle_seconds),
                absolute_seconds: i64::from(self.ui_session_seconds),
            },
            secure_cookie: self.ui_cookie == UiCookie::Secure,
        }
    }
}

/// A shared secret from the command line or environment (the ingest and metrics tokens), never
/// printed.
#[derive(Clone)]
pub struct SecretToken(pub String);

impl std::fmt::Debug for SecretToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretToken(<redacted>)")
    }
}

impl std::str::FromStr for SecretToken {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        if text.len() < 32 {
            return Err("the token must be at least 32 characters".into());
        }
        Ok(Self(text.to_owned()))
    }
}

#[derive(Debug, Subcommand)]
pub enum AssertionKeyCommand {
    /// Make an Ed25519 key pair for the edge's identity assertions: the private JWK goes to
    /// `--output` (mode 0600, never overwritten) for `wrangler secret put KEYGATE_ASSERTION_KEY`;
    /// the public JWK is printed, for the JWKS (`KEYGATE_ASSERTION_JWKS`).
    Generate {
        /// The key's id, e.g. `kg-2026-12`: name it for when it was made, so rotations read well.
        #[arg(long)]
        kid: String,
        /// Where the private JWK is written.
        #[arg(long)]
        output: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum RecordKeyCommand {
    /// Make an Ed25519 key pair for signing snapshot records: the private JWK goes to `--output`
    /// (mode 0600, never overwritten) for `keygate serve --record-signing-key-file`; the public
    /// JWK is printed, for the Worker's `KEYGATE_RECORD_KEYS`.
    Generate {
        /// The key's id, e.g. `rec-2026-12`.
        #[arg(long)]
        kid: String,
        /// Where the private JWK is written.
        #[arg(long)]
        output: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct SyncCommand {
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub sync: SyncArgs,
    /// Queue every key's current record again, push them all, and delete KV entries that no key
    /// explains: a rebuild of the whole snapshot.
    #[arg(long)]
    pub full: bool,
    /// Fail if the outbox is not empty after this long.
    #[arg(long, env = "KEYGATE_SYNC_TIMEOUT_SECONDS", default_value_t = 600)]
    pub timeout_seconds: u64,
}

/// Where snapshot records go.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SinkKind {
    /// Nowhere: changes wait in the outbox (and `GET /v1/sync/status` says so).
    None,
    /// The Cloudflare REST API (production).
    Cloudflare,
    /// The local store `wrangler dev` reads, through `wrangler kv --local` (development).
    Wrangler,
}

/// The snapshot pusher: its KV sink and how it retries and reconciles.
#[derive(Debug, Args)]
pub struct SyncArgs {
    /// Where the pusher writes snapshot records.
    #[arg(long, env = "KEYGATE_KV_SINK", value_enum, default_value_t = SinkKind::None)]
    pub kv_sink: SinkKind,
    /// Cloudflare account id (`--kv-sink cloudflare`).
    #[arg(long, env = "CLOUDFLARE_ACCOUNT_ID")]
    pub cloudflare_account_id: Option<String>,
    /// Id of the Workers KV namespace the edge's `KEYS` binding reads (`--kv-sink cloudflare`).
    #[arg(long, env = "KEYGATE_KV_NAMESPACE_ID")]
    pub kv_namespace_id: Option<String>,
    /// API token with "Workers KV Storage: Edit" on that account, and nothing more.
    #[arg(long, env = "CLOUDFLARE_API_TOKEN", hide_env_values = true, value_parser = parse_token)]
    pub cloudflare_api_token: Option<ApiToken>,
    /// The Cloudflare API's base URL (wrangler reads the same variable).
    #[arg(long, env = "CLOUDFLARE_API_BASE_URL", default_value = DEFAULT_BASE_URL)]
    pub cloudflare_api_base_url: String,
    /// The wrangler executable (`--kv-sink wrangler`).
    #[arg(long, env = "KEYGATE_WRANGLER", default_value = "wrangler")]
    pub wrangler: PathBuf,
    /// The Worker's wrangler.toml (`--kv-sink wrangler`).
    #[arg(long, env = "KEYGATE_WRANGLER_CONFIG", default_value = "wrangler.toml")]
    pub wrangler_config: PathBuf,
    /// The KV binding in that file (`--kv-sink wrangler`).
    #[arg(long, env = "KEYGATE_KV_BINDING", default_value = "KEYS")]
    pub kv_binding: String,
    /// The `--persist-to` directory of the `wrangler dev` to feed; unset: wrangler's default.
    #[arg(long, env = "KEYGATE_WRANGLER_PERSIST_TO")]
    pub wrangler_persist_to: Option<PathBuf>,
    /// Keys per push round, 1 to 10000 (KV's bulk limit).
    #[arg(long, env = "KEYGATE_SYNC_BATCH_SIZE", default_value_t = 10_000,
          value_parser = clap::value_parser!(u16).range(1..=10_000))]
    pub sync_batch_size: u16,
    /// How often an idle pusher checks the outbox for other replicas' changes (milliseconds).
    #[arg(long, env = "KEYGATE_SYNC_POLL_MS", default_value_t = 1000)]
    pub sync_poll_ms: u64,
    /// How long a pusher's claim on a key lasts; keys held by a pusher that died wait this long.
    #[arg(long, env = "KEYGATE_SYNC_LEASE_SECONDS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(2..=3600))]
    pub sync_lease_seconds: u64,
    /// The longest wait between two attempts at a failing push.
    #[arg(long, env = "KEYGATE_SYNC_MAX_BACKOFF_SECONDS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub sync_max_backoff_seconds: u64,
    /// The private Ed25519 JWK every record pushed to KV is signed with, in a file only its owner
    /// can read (`keygate record-key generate`). Required with a sink: the edge trusts no
    /// unsigned record.
    #[arg(long, env = "KEYGATE_RECORD_SIGNING_KEY_FILE")]
    pub record_signing_key_file: Option<PathBuf>,
    /// Seconds between reconciliation passes (list KV, repair drift); 0 turns them off.
    #[arg(
        long,
        env = "KEYGATE_RECONCILE_INTERVAL_SECONDS",
        default_value_t = 600
    )]
    pub reconcile_interval_seconds: u64,
    /// The most KV entries whose values one reconciliation pass reads and checks against what
    /// keygate signed (100 per bulk read); a larger namespace is read in turns over several
    /// passes. 0: compare versions only.
    #[arg(long, env = "KEYGATE_RECONCILE_READS", default_value_t = 100_000)]
    pub reconcile_reads: usize,
    /// The edge's change feed route (`https://<edge>/.keygate/feed`): every record is appended
    /// there before it goes to KV, so isolates learn of it within seconds. Unset: KV alone.
    #[arg(long, env = "KEYGATE_FEED_URL")]
    pub feed_url: Option<String>,
    /// The edge's `KEYGATE_FEED_TOKEN` (a secret of 32 characters or more).
    #[arg(long, env = "KEYGATE_FEED_TOKEN", hide_env_values = true, value_parser = parse_feed_token)]
    pub feed_token: Option<FeedToken>,
    /// How long a record waits for the change feed before KV gets it anyway: while the feed
    /// fails, the edge still learns every change through KV (degraded mode), this much later.
    #[arg(long, env = "KEYGATE_FEED_HOLD_SECONDS", default_value_t = 5,
          value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub feed_hold_seconds: u64,
}

fn parse_feed_token(text: &str) -> Result<FeedToken, String> {
    Ok(FeedToken::new(text.to_owned()))
}

fn parse_token(text: &str) -> Result<ApiToken, String> {
    Ok(ApiToken::new(text.to_owned()))
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
    /// Where the first admin's token is written, in a new file only its owner can read, when this
    /// start creates that admin. Without it `serve` creates no admin (and says so), and
    /// `bootstrap` shows the token only on a terminal: it never goes to a log or a pipe.
    #[arg(long, env = "KEYGATE_BOOTSTRAP_TOKEN_FILE")]
    pub bootstrap_token_file: Option<PathBuf>,
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

/// The longest one append to the change feed may take.
const FEED_APPEND_TIMEOUT: Duration = Duration::from_secs(5);

impl SyncArgs {
    /// How the pusher works, from these flags.
    pub fn push_settings(&self) -> PushSettings {
        PushSettings {
            batch_size: usize::from(self.sync_batch_size),
            poll_interval: Duration::from_millis(self.sync_poll_ms.max(10)),
            lease: Duration::from_secs(self.sync_lease_seconds),
            max_backoff: Duration::from_secs(self.sync_max_backoff_seconds),
            reconcile_interval: (self.reconcile_interval_seconds > 0)
                .then(|| Duration::from_secs(self.reconcile_interval_seconds)),
            reconcile_reads: self.reconcile_reads,
            feed_hold: Duration::from_secs(self.feed_hold_seconds),
        }
    }

    /// The change feed writer, if one is configured, or what is missing or wrong.
    pub fn feed(&self) -> Result<Option<FeedWriter>, String> {
        // The feed is the fast path: a stalled append is given up soon and tried again, rather
        // than holding every change behind it for half a lease.
        let timeout = (Duration::from_secs(self.sync_lease_seconds) / 2).min(FEED_APPEND_TIMEOUT);
        match (&self.feed_url, &self.feed_token) {
            (None, None) => Ok(None),
            (Some(url), Some(token)) => FeedWriter::new(url, token.clone(), timeout).map(Some),
            (Some(_), None) => Err("--feed-url needs --feed-token (KEYGATE_FEED_TOKEN)".into()),
            (None, Some(_)) => Err("--feed-token needs --feed-url (KEYGATE_FEED_URL)".into()),
        }
    }

    /// The record signing key, or what is missing or wrong.
    pub fn signer(&self) -> Result<RecordSigner, String> {
        let path = self.record_signing_key_file.as_ref().ok_or(
            "a KV sink needs --record-signing-key-file (KEYGATE_RECORD_SIGNING_KEY_FILE): the \
             edge trusts only signed records; make a key with `keygate record-key generate`",
        )?;
        let text = zeroize::Zeroizing::new(
            std::fs::read_to_string(path)
                .map_err(|error| format!("cannot read {}: {error}", path.display()))?,
        );
        RecordSigner::from_jwk(text.trim())
            .map_err(|problem| format!("{}: {problem}", path.display()))
    }

    /// The configured sink, `None` for `--kv-sink none`, or what is missing or wrong.
    pub fn sink(&self) -> Result<Option<Sink>, String> {
        // A request may take at most half a lease: the pusher hands back keys it holds past that.
        let timeout = Duration::from_secs(self.sync_lease_seconds) / 2;
        Ok(match self.kv_sink {
            SinkKind::None => None,
            SinkKind::Cloudflare => {
                let missing = |flag: &str| format!("--kv-sink cloudflare needs {flag}");
                Some(Sink::Cloudflare(CloudflareKv::new(
                    &self.cloudflare_api_base_url,
                    self.cloudflare_account_id.as_deref().ok_or_else(|| {
                        missing("--cloudflare-account-id (CLOUDFLARE_ACCOUNT_ID)")
                    })?,
                    self.kv_namespace_id
                        .as_deref()
                        .ok_or_else(|| missing("--kv-namespace-id (KEYGATE_KV_NAMESPACE_ID)"))?,
                    self.cloudflare_api_token
                        .clone()
                        .ok_or_else(|| missing("--cloudflare-api-token (CLOUDFLARE_API_TOKEN)"))?,
                    timeout,
                )?))
            }
            SinkKind::Wrangler => Some(Sink::Wrangler(WranglerKv {
                program: self.wrangler.clone(),
                config: self.wrangler_config.clone(),
                binding: self.kv_binding.clone(),
                persist_to: self.wrangler_persist_to.clone(),
                timeout,
            })),
        })
    }
}
