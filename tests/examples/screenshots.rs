//! Screenshots of the dashboard for the docs (`scripts/screenshots`): the real `keygate` binary
//! on a fresh SQLite database with a few sample keys, in headless Chromium. Writes
//! docs/screenshots/*.png; they illustrate the docs and are no test's fixture.

use keygate_e2e::browser::Browser;
use keygate_e2e::keygate::{Keygate, bootstrap};
use keygate_e2e::repo_root;
use reqwest::Method;
use serde_json::json;

fn main() {
    let browser = Browser::start()
        .expect("chromium and chromedriver (apt-get install chromium chromium-driver)");
    let dir = tempfile::tempdir().expect("temp dir");
    let database = format!("sqlite://{}", dir.path().join("keygate.db").display());
    let token = bootstrap(&database);
    let ingest = ("KEYGATE_INGEST_TOKEN", INGEST_TOKEN.to_owned());
    let keygate = Keygate::serve(&database, &token, &[ingest], dir.path());
    keygate.catalogue(&["customer:read", "customer:write", "invoice:read"]);
    let samples = [
        (
            "billing service",
            json!(["customer:read", "invoice:read"]),
            Some(json!({"requests": 600, "window_seconds": 60})),
        ),
        ("support dashboard", json!(["customer:read"]), None),
        (
            "nightly export",
            json!(["invoice:read"]),
            Some(json!({"requests": 10, "window_seconds": 1})),
        ),
        (
            "partner: acme",
            json!(["customer:read", "customer:write"]),
            None,
        ),
    ];
    for (name, permissions, rate_limit) in samples {
        let (status, body) = keygate.call(
            Method::POST,
            "/v1/keys",
            Some(json!({"name": name, "permissions": permissions, "rate_limit": rate_limit, "expires_in_days": 90})),
        );
        assert_eq!(status, 201, "{body}");
    }
    let (_, listed) = keygate.call(Method::GET, "/v1/keys?name=nightly", None);
    let nightly = listed["items"][0]["key_id"]
        .as_str()
        .expect("an id")
        .to_owned();
    keygate.call(Method::POST, &format!("/v1/keys/{nightly}/disable"), None);
    let (_, listed) = keygate.call(Method::GET, "/v1/keys?name=billing", None);
    let billing = listed["items"][0]["key_id"]
        .as_str()
        .expect("an id")
        .to_owned();
    traffic(&keygate, &billing);
    let (_, user) = keygate.call(
        Method::POST,
        "/v1/users",
        Some(json!({"email": "dana@example.com", "role": "member"})),
    );
    let user_id = user["user_id"].as_str().expect("an id").to_owned();
    keygate.call(
        Method::POST,
        &format!("/v1/users/{user_id}/tokens"),
        Some(json!({"name": "laptop"})),
    );

    let out = repo_root().join("docs/screenshots");
    std::fs::create_dir_all(&out).expect("docs/screenshots");
    let shoot = |name: &str| {
        browser.screenshot(&out.join(format!("{name}.png")));
        eprintln!("docs/screenshots/{name}.png");
    };
    browser.goto(&keygate.url("/ui/sign-in"));
    shoot("sign-in");
    browser.fill("#token", &token);
    browser.click("main button[type=submit]");
    browser.wait_for("table");
    shoot("keys");
    browser.click("#create-key");
    browser.wait_for("dialog#create-dialog:modal #c-name");
    browser.fill("#c-name", "mobile app");
    browser.click("input[name=permissions][value='customer:read']");
    shoot("create");
    browser.click("#create-dialog button[type=submit]");
    browser.wait_for("dialog[data-show-once]:modal input.secret");
    shoot("show-once");
    browser.goto(&keygate.url(&format!("/ui/keys/{billing}")));
    browser.wait_for("svg.bars");
    shoot("key");
    browser.goto(&keygate.url(&format!("/ui/keys/{billing}/edit")));
    browser.wait_for("#edit-key");
    shoot("edit");
    browser.goto(&keygate.url(&format!("/ui/users/{user_id}")));
    browser.wait_for("#ceiling");
    shoot("user");
    for page in ["users", "logs", "audit", "sync"] {
        browser.goto(&keygate.url(&format!("/ui/{page}")));
        browser.wait_for("main h1");
        shoot(page);
    }
}

const INGEST_TOKEN: &str = "ingest-token-for-the-screenshots-0123456789";

/// A day of made-up requests for `key_id`, as the edge reports them: mostly allowed, some rate
/// limited, a few refused for their address.
fn traffic(keygate: &Keygate, key_id: &str) {
    let events = (0..600_i64).map(|n| {
        let hour = n % 24;
        let outcome = match (n * 7 + hour) % 23 {
            0 | 1 => "rate_limited",
            2 => "ip_not_allowed",
            _ => "ok",
        };
        (outcome, "/v1/invoices", hour * 3_600 + (n * 997) % 3_600)
    });
    keygate.report_usage(INGEST_TOKEN, "shot", key_id, events);
}
