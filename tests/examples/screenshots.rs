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
    let keygate = Keygate::serve(&database, &token, &[], dir.path());
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
}
