//! Ed25519 key pairs: `keygate assertion-key generate`, for the edge's identity assertions, and
//! `keygate record-key generate`, for signing snapshot records. The private JWK goes to a file
//! only its owner can read; the public JWK is printed, for the JWKS that verifiers read.

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;

use rand_core::{OsRng, TryRngCore};

use crate::config::{AssertionKeyCommand, RecordKeyCommand};

pub(crate) fn assertion(command: AssertionKeyCommand) -> ExitCode {
    let AssertionKeyCommand::Generate { kid, output } = command;
    run(&kid, &output, |path| {
        format!(
            "the private key is in {path} (mode 0600). Put it with\n    wrangler secret put \
             KEYGATE_ASSERTION_KEY < {path}\nand add the public key above to KEYGATE_ASSERTION_JWKS."
        )
    })
}

pub(crate) fn record(command: RecordKeyCommand) -> ExitCode {
    let RecordKeyCommand::Generate { kid, output } = command;
    run(&kid, &output, |path| {
        format!(
            "the private key is in {path} (mode 0600): give it to keygate serve and keygate sync \
             (KEYGATE_RECORD_SIGNING_KEY_FILE={path}), and add the public key above to the \
             Worker's KEYGATE_RECORD_KEYS."
        )
    })
}

fn run(kid: &str, output: &Path, next: impl FnOnce(&str) -> String) -> ExitCode {
    match generate(kid, output) {
        Ok(public) => {
            println!("{public}");
            eprintln!("keygate: {}", next(&output.display().to_string()));
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("keygate: {message}");
            ExitCode::from(2)
        }
    }
}

fn generate(kid: &str, output: &Path) -> Result<String, String> {
    let mut secret = zeroize::Zeroizing::new([0u8; 32]);
    OsRng
        .try_fill_bytes(secret.as_mut())
        .map_err(|error| format!("no randomness: {error}"))?;
    let jwk = keygate_origin::generate(kid, &secret);
    // Checked as the edge will check it, so a bad kid fails here and not at deploy.
    let text = zeroize::Zeroizing::new(serde_json::to_string(&jwk).map_err(|e| e.to_string())?);
    keygate_shared::SigningJwk::parse(&text)?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(output)
        .map_err(|error| format!("cannot create {}: {error}", output.display()))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.write_all(b"\n"))
        .map_err(|error| format!("cannot write {}: {error}", output.display()))?;
    serde_json::to_string(&jwk.public()).map_err(|error| error.to_string())
}
