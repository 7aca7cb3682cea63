//! For `scripts/dev` until the control plane issues keys: serves the echo origin on a fixed port and
//! prints one development key and its KV record, so `wrangler dev` has something to verify.
//!
//! Usage: `dev_edge <origin port>`; prints `<key>\n<key id>\n<record>` then serves until killed.

use keygate_e2e::{EchoOrigin, active_record};
use keygate_shared::{Environment, KeyFormat};

fn main() {
    let port: u16 = std::env::args()
        .nth(1)
        .and_then(|arg| arg.parse().ok())
        .unwrap_or(8789);
    let key = KeyFormat::new("kg")
        .expect("prefix")
        .generate(Environment::Development, &mut rand::rng());
    let record = active_record(&key, &["customer:read", "telemetry:write"], "usr_dev");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let _origin = EchoOrigin::bind(&runtime, port);
    println!(
        "{}\n{}\n{}",
        key.expose_secret(),
        key.key_id(),
        record.encode()
    );
    runtime.block_on(std::future::pending::<()>());
}
