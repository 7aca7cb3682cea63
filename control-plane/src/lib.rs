//! keygate-control-plane: the source of truth for keys, users and the permission catalogue, served
//! as an HTTP API (`keygate serve`) and driven by a CLI in the same binary.
//!
//! - [`store`]: SQLite or PostgreSQL through one set of queries; every mutation is one transaction
//!   that also writes its audit row and, for keys, the outbox row the pusher sends to KV.
//! - [`http`]: the `/v1` API, its OpenAPI document, health and metrics; [`app`] builds the router.
//! - `policy`: grant ceilings and the restrictions members cannot lift, for every key change.
//! - [`sync`]: the pusher that drains the outbox to Workers KV, and reconciliation.
//! - [`cli`]: `keygate keys|users|permissions|audit ...`, a client of that API.
//!
//! It does not verify edge traffic (the Worker does, from KV) and it never stores a key or token:
//! only their SHA-256 digests, compared by keygate-shared.

pub mod cli;
mod clock;
pub mod config;
pub mod http;
mod key_pairs;
mod policy;
pub mod scanning;
mod serve;
pub mod store;
pub mod sync;
mod text;

pub use clock::Clock;
pub use config::Cli;
pub use http::{AppState, Settings, app};

use std::process::ExitCode;

/// Runs one invocation of the binary.
pub async fn run(cli: Cli) -> ExitCode {
    match cli.command {
        config::Command::Serve(config) => serve::serve(*config).await,
        config::Command::Bootstrap(args) => serve::bootstrap(args).await,
        config::Command::Sync(command) => serve::sync_once(command).await,
        config::Command::AssertionKey(command) => key_pairs::assertion(command),
        config::Command::RecordKey(command) => key_pairs::record(command),
        config::Command::Client(command) => cli::run(command).await,
    }
}
