//! For `scripts/dev`: the origin behind the local edge, an echo server on a fixed port that answers
//! every request with what it received (so the identity headers the edge adds are visible).
//!
//! Usage: `dev_origin <port>`; serves until killed.

use keygate_e2e::EchoOrigin;

fn main() {
    let port: u16 = std::env::args()
        .nth(1)
        .and_then(|arg| arg.parse().ok())
        .unwrap_or(8789);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let _origin = EchoOrigin::bind(&runtime, port);
    runtime.block_on(std::future::pending::<()>());
}
