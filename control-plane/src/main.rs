//! `keygate`: the control plane's service and CLI. The service arrives with the control-plane
//! issue; this binary states that rather than pretending to serve.

fn main() {
    eprintln!(
        "keygate {}: the control plane service is not built yet (see README.md)",
        env!("CARGO_PKG_VERSION")
    );
    std::process::exit(2);
}
