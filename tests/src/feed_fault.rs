//! A change feed that can be made to fail, for the degraded-mode tests under `wrangler dev`.
//!
//! The Worker runs as shipped, except that its `FEED` binding points at a second Worker in the
//! same `wrangler dev` (multi-config, one workerd): `keygate-feed-fault`, whose `ChangeFeed` class
//! hands every request to the real `ChangeFeed` object of the keygate Worker, or fails it, as the
//! test's switch says: answer 503, or stall. The switch is an HTTP endpoint in the test process that
//! the proxy asks on every request. Reads and appends both go through it, as both would fail in a
//! real outage of the object.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use crate::repo_root;

/// What the feed does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FeedMode {
    /// Works.
    Up = 0,
    /// Answers 503 to every read and append.
    Failing = 1,
    /// Answers nothing for 30 s.
    Stalled = 2,
}

const PROXY_JS: &str = r#"// keygate-feed-fault: the change feed's object behind a switch (tests only).
export class ChangeFeed {
  constructor(state, env) {
    this.env = env;
  }
  async fetch(request) {
    const mode = await (await fetch(this.env.FAULT_SWITCH)).text();
    if (mode === "failing") {
      return new Response("the feed is down", { status: 503 });
    }
    if (mode === "stalled") {
      await new Promise((resolve) => setTimeout(resolve, 30000));
    }
    const real = this.env.REAL.get(this.env.REAL.idFromName("global"));
    return real.fetch(request);
  }
}
export default {
  async fetch() {
    return new Response("not here", { status: 404 });
  },
};
"#;

/// The switch, served on a free port for as long as the runtime runs.
#[derive(Debug, Clone)]
pub struct FeedSwitch {
    mode: Arc<AtomicU8>,
    pub url: String,
}

impl FeedSwitch {
    pub fn start(runtime: &tokio::runtime::Runtime) -> Self {
        let mode = Arc::new(AtomicU8::new(FeedMode::Up as u8));
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind(("127.0.0.1", 0)))
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let shared = mode.clone();
        let app = axum::Router::new().fallback(move || {
            let mode = shared.load(Ordering::SeqCst);
            async move {
                match mode {
                    0 => "up",
                    1 => "failing",
                    _ => "stalled",
                }
            }
        });
        runtime.spawn(async move { axum::serve(listener, app).await });
        Self {
            mode,
            url: format!("http://127.0.0.1:{port}/"),
        }
    }

    pub fn set(&self, mode: FeedMode) {
        self.mode.store(mode as u8, Ordering::SeqCst);
    }
}

/// Writes, into `dir`, the keygate Worker's configuration with its `FEED` binding on the proxy,
/// and the proxy's: the `--config` files of one `wrangler dev`, the keygate Worker's first.
pub fn configs(dir: &Path, switch: &FeedSwitch) -> [std::path::PathBuf; 2] {
    let root = repo_root();
    let shipped = std::fs::read_to_string(root.join("wrangler.toml")).expect("wrangler.toml");
    let binding = "name = \"FEED\"\nclass_name = \"ChangeFeed\"\n";
    assert!(shipped.contains(binding), "wrangler.toml binds FEED");
    let edge = shipped
        .replacen(
            "main = \"edge/build/index.js\"",
            &format!(
                "main = \"{}\"",
                root.join("edge/build/index.js").display()
            ),
            1,
        )
        .replacen(
            binding,
            &format!(
                "{binding}script_name = \"keygate-feed-fault\"\n\n\
                 # Keeps the real class bound here, so its storage is SQLite as shipped.\n\
                 [[durable_objects.bindings]]\nname = \"FEED_OBJECT\"\nclass_name = \"ChangeFeed\"\n"
            ),
            1,
        );
    // The Worker is built already (scripts/test builds it before the tests): no [build].
    let edge: String = edge
        .lines()
        .filter(|line| {
            !(line.starts_with("[build]")
                || line.starts_with("command = ")
                || line.starts_with("watch_dir = "))
        })
        .map(|line| format!("{line}\n"))
        .collect();
    let edge_path = dir.join("keygate.toml");
    std::fs::write(&edge_path, edge).expect("the edge's config");
    std::fs::write(dir.join("fault.js"), PROXY_JS).expect("the proxy");
    let proxy = format!(
        r#"name = "keygate-feed-fault"
main = "fault.js"
compatibility_date = "2026-04-01"

[vars]
FAULT_SWITCH = "{}"

[[durable_objects.bindings]]
name = "REAL"
class_name = "ChangeFeed"
script_name = "keygate-edge"

[[migrations]]
tag = "v1"
new_classes = ["ChangeFeed"]
"#,
        switch.url
    );
    let proxy_path = dir.join("fault.toml");
    std::fs::write(&proxy_path, proxy).expect("the proxy's config");
    [edge_path, proxy_path]
}
