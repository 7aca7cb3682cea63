//! The CLI: `keygate keys|users|permissions|audit|whoami ...`, a client of the HTTP API
//! (`KEYGATE_URL`, `KEYGATE_TOKEN`). Readable tables by default, the API's JSON with `--json`.

mod client;
mod commands;
mod output;

pub use commands::ClientCommand;

use std::process::ExitCode;

/// Runs one CLI command: 0 on success, 1 when the API refused, 2 when it could not be reached or
/// the command was not usable.
pub async fn run(command: ClientCommand) -> ExitCode {
    match commands::execute(command).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("keygate: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}
