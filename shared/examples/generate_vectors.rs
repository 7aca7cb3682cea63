//! Rewrites `shared/tests/vectors/*.json` from the cases in `tests/support/cases.rs`.
//! Run it after an intended change in behaviour, then review the diff like code.

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::Path;

fn main() -> std::io::Result<()> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors");
    std::fs::create_dir_all(&dir)?;
    for (name, contents) in support::cases::files() {
        std::fs::write(dir.join(name), contents)?;
        eprintln!("wrote tests/vectors/{name}");
    }
    Ok(())
}
