//! `keygate`: the control plane's service (`keygate serve`), its first-start setup
//! (`keygate bootstrap`) and the CLI that talks to a running service over HTTP.

use std::process::ExitCode;

use clap::Parser;
use keygate_control_plane::{Cli, run};

#[tokio::main]
async fn main() -> ExitCode {
    run(Cli::parse()).await
}
