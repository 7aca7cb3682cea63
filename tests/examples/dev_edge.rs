//! For `scripts/dev` until the control plane issues keys: serves the echo origin on a fixed port and
//! prints one development key and its KV record, so `wrangler dev` has something to verify.
//!
//! Usage: `dev_edge <origin port>`; prints `<key>\n<key id>\n<record>` then serves until killed.

use keygate_e2e::EchoOrigin;
use keygate_shared::{
    Environment, Grants, IpAllowlist, KeyFormat, KeyRecord, OwnerId, RecordState, SnapshotRecord,
    Status,
};

fn main() {
    let port: u16 = std::env::args()
        .nth(1)
        .and_then(|arg| arg.parse().ok())
        .unwrap_or(8789);
    let key = KeyFormat::new("kg")
        .expect("prefix")
        .generate(Environment::Development, &mut rand::rng());
    let record = SnapshotRecord {
        key_id: key.key_id(),
        version: 1,
        state: RecordState::Present(KeyRecord {
            status: Status::Active,
            digest: key.digest(),
            previous: None,
            environment: Environment::Development,
            not_before: None,
            expires_at: None,
            permissions: Grants::parse(&["customer:read", "telemetry:write"]).expect("grants"),
            customer_id: None,
            rate_limit: None,
            ip_allowlist: IpAllowlist::default(),
            owner_id: OwnerId::parse("usr_dev").expect("owner"),
        }),
    };
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
