//! The dashboard in a real browser: headless Chromium (Debian's, through chromedriver) against
//! the real `keygate` binary on SQLite.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use keygate_e2e::browser::Browser;
use keygate_e2e::keygate::{Keygate, bootstrap};
use keygate_e2e::poll;
use reqwest::Method;
use serde_json::{Value, json};

/// The admin's `keygate serve` and a browser that has not signed in; `None` where there is no
/// browser (outside CI: the harness has said so loudly).
struct Ui {
    keygate: Keygate,
    browser: Browser,
    _dir: tempfile::TempDir,
}

impl Ui {
    fn start(env: &[(&str, &str)]) -> Option<Self> {
        let browser = Browser::start()?;
        let dir = tempfile::tempdir().expect("temp dir");
        let database = format!("sqlite://{}", dir.path().join("keygate.db").display());
        let token = bootstrap(&database);
        let env: Vec<(&str, String)> = env
            .iter()
            .map(|(name, value)| (*name, (*value).to_owned()))
            .collect();
        let keygate = Keygate::serve(&database, &token, &env, dir.path());
        Some(Self {
            keygate,
            browser,
            _dir: dir,
        })
    }

    fn goto(&self, path: &str) {
        self.browser.goto(&self.keygate.url(path));
    }

    fn sign_in(&self, token: &str) {
        self.goto("/ui/sign-in");
        self.browser.fill("#token", token);
        self.browser.click("main button[type=submit]");
    }

    /// A new user with `role` and a token of theirs: (user id, token, token id).
    fn user(&self, email: &str, role: &str) -> (String, String, String) {
        let (status, user) = self.keygate.call(
            Method::POST,
            "/v1/users",
            Some(json!({"email": email, "role": role})),
        );
        assert_eq!(status, 201, "{user}");
        let user_id = user["user_id"].as_str().expect("an id").to_owned();
        let (status, issued) = self.keygate.call(
            Method::POST,
            &format!("/v1/users/{user_id}/tokens"),
            Some(json!({"name": "dashboard"})),
        );
        assert_eq!(status, 201, "{issued}");
        let field = |name: &str| issued[name].as_str().expect(name).to_owned();
        (user_id, field("token"), field("token_id"))
    }

    /// Creates a key as the admin, for `owner` (the admin if `None`); returns its id.
    fn key(&self, name: &str, owner: Option<&str>) -> String {
        let mut body = json!({"name": name, "rate_limit": {"requests": 100, "window_seconds": 60}});
        if let Some(owner) = owner {
            body["owner_id"] = json!(owner);
        }
        let (status, created) = self.keygate.call(Method::POST, "/v1/keys", Some(body));
        assert_eq!(status, 201, "{created}");
        created["key_id"].as_str().expect("an id").to_owned()
    }

    /// The names in the keys table, top to bottom.
    fn listed(&self) -> Vec<String> {
        let names = self.browser.run(
            "return [...document.querySelectorAll('tbody th[scope=row]')].map(cell => cell.textContent)",
        );
        serde_json::from_value(names).expect("names")
    }

    /// Whether the session cookie the browser holds still signs a plain client in.
    fn cookie_signs_in(&self, cookie: &str) -> bool {
        let response = reqwest::blocking::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("a client")
            .get(self.keygate.url("/ui/keys"))
            .header("cookie", cookie)
            .send()
            .expect("keygate answers");
        response.status() == 200
    }

    /// `name=value` of the browser's session cookie (WebDriver sees HttpOnly cookies too).
    fn session_cookie(&self) -> String {
        self.browser
            .cookies()
            .into_iter()
            .find(|(name, _)| name.contains("keygate_session"))
            .map(|(name, value)| format!("{name}={value}"))
            .expect("a session cookie")
    }
}

/// The console's errors other than the one Chromium logs for a page answered with `status`
/// (a refusal the test asked for).
fn unexpected(errors: Vec<String>, status: u16) -> Vec<String> {
    let expected = format!("the server responded with a status of {status}");
    errors
        .into_iter()
        .filter(|error| !error.contains(&expected))
        .collect()
}

#[test]
fn signing_in_and_out() {
    let Some(ui) = Ui::start(&[]) else { return };
    let browser = &ui.browser;

    ui.goto("/ui/keys");
    browser.wait_for_path("/ui/sign-in");

    ui.sign_in("kgcp_live_not-a-token");
    browser.wait_for("[role=alert]");
    assert_eq!(browser.path(), "/ui/sign-in");
    assert!(
        browser.text("[role=alert]").contains("not valid"),
        "{}",
        browser.source()
    );
    assert_eq!(
        unexpected(browser.console_errors(), 401),
        Vec::<String>::new()
    );

    ui.sign_in(&ui.keygate.token);
    browser.wait_for_path("/ui/keys");
    assert_eq!(browser.text("h1"), "API Keys");
    // The cookie is out of scripts' reach, and the token is nowhere in the page.
    assert_eq!(browser.run("return document.cookie"), json!(""));
    assert!(!browser.source().contains(&ui.keygate.token));
    let cookie = ui.session_cookie();
    assert!(
        cookie.starts_with("__Host-keygate_session="),
        "the default cookie is __Host- and Secure, and Chromium keeps it on http://127.0.0.1: {cookie}"
    );
    assert!(ui.cookie_signs_in(&cookie));

    browser.click("header form button");
    browser.wait_for_path("/ui/sign-in");
    // Signing out ended the session on the server, not only in this browser.
    assert!(!ui.cookie_signs_in(&cookie));
    ui.goto("/ui/keys");
    browser.wait_for_path("/ui/sign-in");
    assert_eq!(browser.console_errors(), Vec::<String>::new());
}

#[test]
fn revoking_the_token_or_deactivating_its_user_ends_the_session_at_once() {
    let Some(ui) = Ui::start(&[]) else { return };
    let browser = &ui.browser;

    let (user_id, token, token_id) = ui.user("revoked@example.com", "member");
    ui.sign_in(&token);
    browser.wait_for_path("/ui/keys");
    let (status, body) = ui.keygate.call(
        Method::POST,
        &format!("/v1/users/{user_id}/tokens/{token_id}/revoke"),
        None,
    );
    assert_eq!(status, 204, "{body}");
    ui.goto("/ui/keys");
    browser.wait_for_path("/ui/sign-in");

    let (user_id, token, _) = ui.user("deactivated@example.com", "member");
    ui.sign_in(&token);
    browser.wait_for_path("/ui/keys");
    let (status, body) = ui.keygate.call(
        Method::POST,
        &format!("/v1/users/{user_id}/deactivate"),
        Some(json!({"disable_keys": false})),
    );
    assert_eq!(status, 200, "{body}");
    ui.goto("/ui/keys");
    browser.wait_for_path("/ui/sign-in");
}

#[test]
fn a_session_ends_when_idle_and_at_its_absolute_lifetime() {
    let Some(ui) = Ui::start(&[
        ("KEYGATE_UI_IDLE_SECONDS", "5"),
        ("KEYGATE_UI_SESSION_SECONDS", "9"),
    ]) else {
        return;
    };
    let browser = &ui.browser;

    // Busy: a request every half second keeps it from idling, until the absolute end.
    ui.sign_in(&ui.keygate.token);
    browser.wait_for_path("/ui/keys");
    let started = Instant::now();
    let (_, lasted) = poll(Duration::from_secs(20), "the session ends", || {
        std::thread::sleep(Duration::from_millis(500));
        ui.goto("/ui/keys");
        (browser.path() == "/ui/sign-in").then_some(())
    });
    assert!(
        (8..=12).contains(&lasted.as_secs()),
        "a busy session lasted {:?}; its absolute lifetime is 9 s",
        started.elapsed()
    );

    // Idle: no request for longer than the idle lifetime.
    ui.sign_in(&ui.keygate.token);
    browser.wait_for_path("/ui/keys");
    // The quiet itself is what is tested.
    std::thread::sleep(Duration::from_secs(6));
    ui.goto("/ui/keys");
    browser.wait_for_path("/ui/sign-in");
}

#[test]
fn members_see_only_their_own_keys_and_filters_and_pages_work() {
    let Some(ui) = Ui::start(&[]) else { return };
    let browser = &ui.browser;
    let (member_id, member_token, _) = ui.user("member@example.com", "member");
    let admin = ui.keygate.call(Method::GET, "/v1/users/me", None).1;
    let admin_id = admin["user_id"].as_str().expect("an id").to_owned();
    for index in 0..52 {
        ui.key(&format!("admin key {index:02}"), None);
    }
    ui.key("member key", Some(&member_id));

    // The admin: every key, 50 a page, then the rest on a second page.
    ui.sign_in(&ui.keygate.token);
    browser.wait_for_path("/ui/keys");
    let mut seen = ui.listed();
    assert_eq!(seen.len(), 50);
    assert!(browser.has("#f-owner"), "admins may filter by owner");
    assert!(!browser.has("a[rel=first]"), "the first page");
    browser.click("a[rel=next]");
    poll(Duration::from_secs(10), "the second page", || {
        (ui.listed().len() == 3).then_some(())
    });
    assert!(browser.has("a[rel=first]") && !browser.has("a[rel=next]"));
    seen.extend(ui.listed());
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 53, "every key once over the two pages");
    assert!(seen.contains(&"member key".to_owned()));

    // A filter, through htmx: the table is replaced and the URL says what is shown.
    ui.goto("/ui/keys");
    browser.fill("#f-name", "key 4");
    browser.click("form.filters button[type=submit]");
    poll(Duration::from_secs(10), "the filtered list", || {
        (ui.listed().len() == 10).then_some(())
    });
    let url = browser.run("return new URLSearchParams(location.search).get('name')");
    assert!(url == "key 4", "{url}");
    assert_eq!(
        browser.text("td .status"),
        "Active",
        "the status is a word as well as a colour"
    );

    // A member: only their own key, no owner filter, and no way around it by editing the URL.
    browser.click("header form button");
    browser.wait_for_path("/ui/sign-in");
    ui.sign_in(&member_token);
    browser.wait_for_path("/ui/keys");
    assert_eq!(ui.listed(), ["member key"]);
    assert!(!browser.has("#f-owner"));
    assert_eq!(browser.console_errors(), Vec::<String>::new());
    ui.goto(&format!("/ui/keys?owner_id={admin_id}"));
    assert!(ui.listed().is_empty());
    assert!(
        browser
            .text("[role=alert]")
            .contains("members can only list their own keys"),
        "{}",
        browser.source()
    );
    assert_eq!(
        unexpected(browser.console_errors(), 403),
        Vec::<String>::new()
    );
}

/// A page on another origin (another port of 127.0.0.1: same site, other origin) with a form
/// that posts to keygate.
fn hostile_page(target: &str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a port");
    let port = listener.local_addr().expect("its address").port();
    let page = format!(
        "<!doctype html><title>elsewhere</title><form method=post action=\"{target}\">\
         <button id=go>Win a prize</button></form>"
    );
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{page}",
                page.len()
            );
        }
    });
    port
}

#[test]
fn a_cross_origin_post_is_refused_and_every_page_carries_the_security_headers() {
    let Some(ui) = Ui::start(&[]) else { return };
    let browser = &ui.browser;
    ui.sign_in(&ui.keygate.token);
    browser.wait_for_path("/ui/keys");

    let port = hostile_page(&ui.keygate.url("/ui/sign-out"));
    browser.goto(&format!("http://127.0.0.1:{port}/"));
    browser.click("#go");
    poll(Duration::from_secs(10), "the refusal", || {
        browser
            .source()
            .contains("Cross-origin request refused")
            .then_some(())
    });
    assert_eq!(
        unexpected(browser.console_errors(), 403),
        Vec::<String>::new()
    );
    // Still signed in: the forged sign-out did nothing.
    ui.goto("/ui/keys");
    assert_eq!(browser.path(), "/ui/keys");

    let http = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a client");
    let cookie = ui.session_cookie();
    for (path, cookie) in [
        ("/ui/sign-in", ""),
        ("/ui/keys", cookie.as_str()),
        ("/ui/keys?status=bogus", &cookie),
    ] {
        let response = http
            .get(ui.keygate.url(path))
            .header("cookie", cookie)
            .send()
            .expect("keygate answers");
        assert!(response.status() != 303, "{path} is a page here");
        let headers = response.headers();
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|value| value.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        let csp = header("content-security-policy");
        for directive in [
            "default-src 'self'",
            "frame-ancestors 'none'",
            "form-action 'self'",
            "base-uri 'none'",
        ] {
            assert!(csp.contains(directive), "{path}: {csp}");
        }
        assert_eq!(header("cache-control"), "no-store", "{path}");
        assert_eq!(header("referrer-policy"), "no-referrer", "{path}");
        assert_eq!(header("x-content-type-options"), "nosniff", "{path}");
        assert!(
            header("content-type").starts_with("text/html"),
            "{path}: every page is a page, errors too"
        );
    }
    // The assets the pages load: content-hashed URLs, cached for a year.
    let page = http
        .get(ui.keygate.url("/ui/keys"))
        .header("cookie", &cookie)
        .send()
        .expect("the page")
        .text()
        .expect("its text");
    let assets: Vec<&str> = page
        .split('"')
        .filter(|part| part.starts_with("/assets/"))
        .collect();
    assert_eq!(assets.len(), 4, "{page}");
    for asset in assets {
        let response = http.get(ui.keygate.url(asset)).send().expect("the asset");
        assert_eq!(response.status(), 200, "{asset}");
        assert_eq!(
            response.headers()["cache-control"],
            "public, max-age=31536000, immutable"
        );
    }
    let stale = http
        .get(ui.keygate.url("/assets/keygate.000000000000.css"))
        .send()
        .expect("keygate answers");
    assert_eq!(stale.status(), 404);

    // The API keeps its own error shape beside the pages.
    let (status, body): (u16, Value) = ui.keygate.call(Method::GET, "/v1/keys?status=bogus", None);
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "invalid_query");
    assert_eq!(browser.console_errors(), Vec::<String>::new());
}

#[test]
fn creating_a_key_with_every_field_then_copy_download_and_close_showing_it_once() {
    let Some(ui) = Ui::start(&[]) else { return };
    let browser = &ui.browser;
    ui.keygate.catalogue(&["customer:read", "customer:write"]);
    let (member_id, _, _) = ui.user("owner@example.com", "member");
    ui.sign_in(&ui.keygate.token);
    browser.wait_for_path("/ui/keys");
    browser.grant("clipboard-read");
    browser.grant("clipboard-write");

    // Open the dialog, and submit it without a name: the API's message, next to the field.
    browser.click("#create-key");
    // A modal dialog (the server's is merely open, for reading without JavaScript).
    browser.wait_for("dialog#create-dialog:modal #c-name");
    browser.click("#create-dialog button[type=submit]");
    browser.wait_for("#c-name-problem");
    assert_eq!(
        browser.run("return document.querySelector('#c-name').getAttribute('aria-invalid')"),
        json!("true")
    );

    // Every field.
    browser.fill("#c-name", "billing service");
    browser.fill("#c-description", "Charges customers");
    browser.run("document.querySelector('#c-environment').value = 'staging'");
    // Available into Selected: ticking moves a permission over, unticking puts it back.
    let side = |value: &str| {
        browser.run(&format!(
            "return document.querySelector(\"input[name=permissions][value='{value}']\").closest('ul').dataset.side"
        ))
    };
    assert_eq!(side("customer:read"), json!("Available"));
    browser.click("input[name=permissions][value='customer:read']");
    browser.click("input[name=permissions][value='customer:write']");
    assert_eq!(side("customer:read"), json!("Selected"));
    assert_eq!(side("customer:write"), json!("Selected"));
    browser.click("input[name=permissions][value='customer:write']");
    assert_eq!(side("customer:write"), json!("Available"));
    assert_eq!(
        browser.run("return document.querySelector('[data-picker] [role=status]').textContent"),
        json!("customer:write: available"),
        "the move is announced"
    );
    browser.fill("#c-customer", "cus_42");
    browser.click("#c-expires");
    browser.fill("#c-days", "30");
    browser.fill("#c-requests", "100");
    browser.fill("#c-window", "60");
    browser.fill("#c-allowlist", "10.0.0.0/8\n2001:db8::/32");
    browser.run(&format!(
        "document.querySelector('#c-owner').value = '{member_id}'"
    ));
    browser.click("#create-dialog button[type=submit]");
    browser.wait_for("dialog[data-show-once]:modal input.secret");
    let key = browser
        .run("return document.querySelector('input.secret').value")
        .as_str()
        .expect("the key")
        .to_owned();
    assert!(key.starts_with("kg_test_"), "a staging key");
    assert!(
        browser
            .text("#once-warning")
            .contains("You won't see this key again")
    );

    // Copy: the clipboard holds the key, and "Copied" is announced.
    browser.click("[data-copy]");
    poll(Duration::from_secs(10), "Copied", || {
        (browser.text("#once-status") == "Copied").then_some(())
    });
    let copied = browser.run_async(
        "navigator.clipboard.readText().then(arguments[0], error => arguments[0]('refused: ' + error))",
    );
    assert_eq!(copied, json!(key));

    // Download: billing-service.apikey holds the key.
    browser.click("[data-download]");
    let file = browser
        .dir
        .path()
        .join("downloads")
        .join("billing-service.apikey");
    // Chromium may show the file before it has written it: the download is done when it has
    // content.
    let saved = poll(Duration::from_secs(10), "the download", || {
        std::fs::read_to_string(&file)
            .ok()
            .filter(|text| !text.trim().is_empty())
    })
    .0;
    assert_eq!(saved.trim(), key);

    // Escape asks first; "Go back" keeps the key; Close, confirmed, takes it off the page.
    browser.escape();
    browser.wait_for("#once-confirm[open]");
    assert_eq!(
        browser.run("return document.activeElement.textContent"),
        json!("Go back"),
        "the destructive button is not the default"
    );
    browser.click("[data-confirm-stay]");
    assert!(browser.has("dialog[data-show-once][open] input.secret"));
    browser.click("[data-close-once]");
    browser.wait_for("#once-confirm[open]");
    browser.click("[data-confirm-close]");
    browser.wait_for_path("/ui/keys");
    poll(
        Duration::from_secs(10),
        "the list without the dialog",
        || (!browser.has("dialog[data-show-once]")).then_some(()),
    );
    assert!(!browser.source().contains(&key), "the key left the page");
    assert!(ui.listed().contains(&"billing service".to_owned()));

    // The key as the API sees it, and no later response that holds it.
    let (status, listed) = ui.keygate.call(Method::GET, "/v1/keys?name=billing", None);
    assert_eq!(status, 200);
    let created = &listed["items"][0];
    assert!(!listed.to_string().contains(&key));
    assert_eq!(created["environment"], "staging");
    assert_eq!(created["description"], "Charges customers");
    assert_eq!(created["permissions"], json!(["customer:read"]));
    assert_eq!(created["customer_id"], "cus_42");
    assert_eq!(created["owner_id"], json!(member_id));
    assert_eq!(
        created["rate_limit"],
        json!({"requests": 100, "window_seconds": 60})
    );
    assert_eq!(
        created["ip_allowlist"],
        json!(["10.0.0.0/8", "2001:db8::/32"])
    );
    assert!(created["expires_at"].is_string());
    assert!(
        !ui.keygate.log().contains(&key),
        "the key is in no log line"
    );
    // The one refusal asked for: the form without a name.
    assert_eq!(
        unexpected(browser.console_errors(), 422),
        Vec::<String>::new()
    );
}

#[test]
fn a_member_is_offered_only_their_ceiling_and_a_hand_edited_request_is_refused() {
    let Some(ui) = Ui::start(&[]) else { return };
    let browser = &ui.browser;
    ui.keygate.catalogue(&["customer:read", "customer:write"]);
    let (member_id, member_token, _) = ui.user("member@example.com", "member");
    let (status, body) = ui.keygate.call(
        Method::PUT,
        &format!("/v1/users/{member_id}/ceiling"),
        Some(json!({"permissions": ["customer:read"]})),
    );
    assert_eq!(status, 200, "{body}");
    ui.sign_in(&member_token);
    browser.wait_for_path("/ui/keys");
    browser.click("#create-key");
    browser.wait_for("dialog#create-dialog:modal #c-name");
    let offered = browser.run(
        "return [...document.querySelectorAll('input[name=permissions]')].map(box => box.value)",
    );
    assert_eq!(offered, json!(["customer:read"]));
    assert!(
        !browser.has("#c-owner"),
        "members create for themselves only"
    );

    // The form edited by hand to ask for more than the ceiling, and for another owner.
    browser.fill("#c-name", "too much");
    browser.run(
        "const box = document.querySelector('input[name=permissions]'); \
         box.value = 'customer:write'; box.checked = true;",
    );
    browser.click("#create-dialog button[type=submit]");
    browser.wait_for("#create-dialog .banner");
    assert!(
        browser
            .text("#create-dialog .banner")
            .contains("above your grant ceiling"),
        "{}",
        browser.source()
    );
    browser.run(
        "const form = document.querySelector('#create-dialog form'); \
         const owner = document.createElement('input'); owner.type = 'hidden'; \
         owner.name = 'owner_id'; owner.value = 'usr_someone_else'; form.append(owner); \
         document.querySelector('input[name=permissions]').checked = false;",
    );
    browser.click("#create-dialog button[type=submit]");
    poll(Duration::from_secs(10), "the refusal", || {
        browser
            .source()
            .contains("members can only create keys for themselves")
            .then_some(())
    });
    let (_, keys) = ui.keygate.call(Method::GET, "/v1/keys", None);
    assert_eq!(keys["items"], json!([]), "nothing was created");
}

#[test]
fn row_actions_toggle_regenerate_with_and_without_grace_revoke_and_delete() {
    let Some(ui) = Ui::start(&[]) else { return };
    let browser = &ui.browser;
    let key_id = ui.key("rotating", None);
    let get = || {
        ui.keygate
            .call(Method::GET, &format!("/v1/keys/{key_id}"), None)
            .1
    };
    ui.sign_in(&ui.keygate.token);
    browser.wait_for_path("/ui/keys");
    let row = |css: &str| format!("tbody tr:has(td.id) {css}");

    // The toggle.
    browser.click(&row("button[aria-label='Disable rotating']"));
    browser.wait_for(&row(".status-disabled"));
    assert_eq!(get()["status"], "disabled");
    browser.click(&row("button[aria-label='Enable rotating']"));
    browser.wait_for(&row(".status-active"));
    assert_eq!(get()["status"], "active");

    // Regenerate with an hour's grace: the new key once, the old one valid for the hour.
    browser.click("a[aria-label='Regenerate rotating']");
    browser.wait_for("dialog#action-dialog:modal #a-grace");
    assert_eq!(
        browser.run("return document.activeElement.textContent"),
        json!("Cancel"),
        "the destructive button is not the default"
    );
    assert!(browser.text("#action-title").contains("rotating"));
    browser.run("document.querySelector('#a-grace').value = '3600'");
    browser.click("#action-dialog button[type=submit]");
    browser.wait_for("dialog[data-show-once]:modal input.secret");
    let regenerated = browser.run("return document.querySelector('input.secret').value");
    assert!(
        regenerated
            .as_str()
            .is_some_and(|key| key.starts_with("kg_live_"))
    );
    assert!(get()["previous_secret_expires_at"].is_string());

    // Again, without grace: the old secret stops at once.
    ui.goto("/ui/keys");
    browser.click("a[aria-label='Regenerate rotating']");
    browser.wait_for("dialog#action-dialog:modal #a-grace");
    browser.click("#action-dialog button[type=submit]");
    browser.wait_for("dialog[data-show-once]:modal input.secret");
    assert!(get()["previous_secret_expires_at"].is_null());

    // Revoke: Escape backs out with the focus returned; no reason is refused in the dialog.
    ui.goto("/ui/keys");
    browser.click("a[aria-label='Revoke rotating']");
    browser.wait_for("dialog#action-dialog:modal #a-reason");
    browser.escape();
    poll(Duration::from_secs(10), "the dialog closed", || {
        (!browser.has("#action-dialog")).then_some(())
    });
    assert_eq!(
        browser.run("return document.activeElement.getAttribute('aria-label')"),
        json!("Revoke rotating"),
        "focus returns to the opener"
    );
    browser.click("a[aria-label='Revoke rotating']");
    browser.wait_for("dialog#action-dialog:modal #a-reason");
    browser.run("document.querySelector('#a-reason').removeAttribute('required')");
    browser.click("#action-dialog button[type=submit]");
    browser.wait_for("#action-dialog .banner");
    assert_eq!(get()["status"], "active", "nothing was revoked");
    browser.fill("#a-reason", "rotated out");
    browser.click("#action-dialog button[type=submit]");
    browser.wait_for(&row(".status-revoked"));
    assert_eq!(get()["revoked_reason"], "rotated out");
    assert!(!browser.has("a[aria-label='Revoke rotating']"));

    // Delete.
    browser.click("a[aria-label='Delete rotating']");
    browser.wait_for("dialog#action-dialog:modal");
    browser.click("#action-dialog button[type=submit]");
    poll(
        Duration::from_secs(10),
        "the key gone from the list",
        || ui.listed().is_empty().then_some(()),
    );
    let (status, _) = ui
        .keygate
        .call(Method::GET, &format!("/v1/keys/{key_id}"), None);
    assert_eq!(status, 404);
    assert_eq!(
        unexpected(browser.console_errors(), 422),
        Vec::<String>::new()
    );
}

#[test]
fn a_key_can_be_created_with_the_keyboard_alone() {
    use fantoccini::key::Key;
    let Some(ui) = Ui::start(&[]) else { return };
    let browser = &ui.browser;
    let (tab, enter) = (char::from(Key::Tab), char::from(Key::Enter));
    ui.sign_in(&ui.keygate.token);
    browser.wait_for_path("/ui/keys");

    // Tab from the top of the page to "Create API Key", then Enter.
    browser.run("document.activeElement.blur()");
    for _ in 0..10 {
        if browser.focused() == "create-key" {
            break;
        }
        browser.press(&tab.to_string());
    }
    assert_eq!(browser.focused(), "create-key", "reachable by Tab");
    browser.press(&enter.to_string());
    browser.wait_for("dialog#create-dialog:modal #c-name");
    poll(Duration::from_secs(10), "the name field focused", || {
        (browser.focused() == "c-name").then_some(())
    });
    browser.press(&format!("typed by keyboard{enter}"));
    browser.wait_for("dialog[data-show-once]:modal input.secret");

    // Escape asks; Tab moves from "Go back" to "Close"; Enter closes.
    browser.escape();
    browser.wait_for("#once-confirm[open]");
    assert_eq!(browser.focused(), "Go back");
    browser.press(&tab.to_string());
    assert_eq!(browser.focused(), "Close");
    browser.press(&enter.to_string());
    poll(Duration::from_secs(10), "the list with the new key", || {
        ui.listed()
            .contains(&"typed by keyboard".to_owned())
            .then_some(())
    });
    assert!(!browser.has("input.secret"));
}

#[test]
fn the_sync_panel_shows_what_the_edge_does_not_know_yet_to_operators_only() {
    let Some(ui) = Ui::start(&[]) else { return };
    let browser = &ui.browser;
    // No KV sink here: every change waits in the outbox.
    ui.key("one", None);
    ui.key("two", None);
    let (_, member_token, _) = ui.user("member@example.com", "member");
    ui.sign_in(&ui.keygate.token);
    browser.wait_for_path("/ui/keys");
    browser.click("nav a[href='/ui/sync']");
    browser.wait_for_path("/ui/sync");
    let depth = ui.keygate.sync_status()["outbox_depth"]
        .as_i64()
        .expect("a depth");
    assert!(depth >= 2, "two keys' records at least");
    assert!(
        browser
            .text("#outbox-depth")
            .starts_with(&depth.to_string()),
        "{}",
        browser.text("#outbox-depth")
    );

    browser.click("header form button");
    browser.wait_for_path("/ui/sign-in");
    ui.sign_in(&member_token);
    browser.wait_for_path("/ui/keys");
    assert!(
        !browser.has("nav a[href='/ui/sync']"),
        "not offered to members"
    );
    ui.goto("/ui/sync");
    assert!(
        browser
            .source()
            .contains("needs the admin or key_manager role"),
        "{}",
        browser.source()
    );
    assert_eq!(
        unexpected(browser.console_errors(), 403),
        Vec::<String>::new()
    );
}

#[test]
fn editing_a_key_keeps_to_the_ceiling_and_shows_who_locked_what() {
    let Some(ui) = Ui::start(&[]) else { return };
    let browser = &ui.browser;
    let (member_id, member_token, _) = ui.user("member@example.com", "member");
    ui.keygate.catalogue(&["orders:read", "orders:write"]);
    // The admin scopes the member's key to a customer and limits its rate: both locked.
    let (status, created) = ui.keygate.call(
        Method::POST,
        "/v1/keys",
        Some(json!({
            "name": "member key", "owner_id": member_id, "customer_id": "acme",
            "rate_limit": {"requests": 100, "window_seconds": 60},
            "permissions": ["orders:write"]
        })),
    );
    assert_eq!(status, 201, "{created}");
    let key_id = created["key_id"].as_str().expect("an id").to_owned();
    // Then lowers the member's ceiling below what the key holds: it keeps working as it is.
    let (status, body) = ui.keygate.call(
        Method::PUT,
        &format!("/v1/users/{member_id}/ceiling"),
        Some(json!({"permissions": ["orders:read"]})),
    );
    assert_eq!(status, 200, "{body}");
    let get = || {
        ui.keygate
            .call(Method::GET, &format!("/v1/keys/{key_id}"), None)
            .1
    };
    let (_, admin) = ui.keygate.call(Method::GET, "/v1/users/me", None);
    let admin_id = admin["user_id"]
        .as_str()
        .expect("the admin's id")
        .to_owned();

    ui.sign_in(&member_token);
    browser.wait_for_path("/ui/keys");
    browser.click("a[aria-label='Edit member key']");
    browser.wait_for_path(&format!("/ui/keys/{key_id}/edit"));
    for field in ["customer_id", "rate_limit"] {
        let lock = browser.text(&format!("#lock-{field}"));
        assert!(lock.contains(&admin_id), "{field}: {lock}");
        assert!(lock.contains("not loosen"), "{field}: {lock}");
    }
    assert!(!browser.has("#lock-ip_allowlist"), "only what was locked");
    // What the key holds beyond the ceiling is on the form, ticked, so saving keeps it.
    assert_eq!(
        browser.run("return document.querySelector(\"input[name=permissions][value='orders:write']\").checked"),
        json!(true)
    );
    assert!(browser.source().contains("beyond the ceiling"));
    assert_eq!(
        browser.run("return document.querySelector('#c-customer').value"),
        json!("acme"),
        "the form holds the key as it is"
    );

    // Loosening a lock is refused next to the form, and changes nothing.
    browser.fill("#c-name", "renamed");
    browser.fill("#c-customer", "");
    browser.click("#edit-key button[type=submit]");
    browser.wait_for("#edit-key .banner");
    assert!(
        browser.text("#edit-key .banner").contains("customer_id"),
        "{}",
        browser.text("#edit-key .banner")
    );
    assert_eq!(get()["name"], "member key", "nothing was saved");

    // Tightening and renaming are saved, then the key's page shows them.
    browser.fill("#c-customer", "acme");
    browser.fill("#c-name", "renamed");
    browser.fill("#c-description", "for the nightly job");
    browser.fill("#c-requests", "50");
    browser.click("#edit-key button[type=submit]");
    browser.wait_for_path(&format!("/ui/keys/{key_id}"));
    let key = get();
    assert_eq!(key["name"], "renamed");
    assert_eq!(key["description"], "for the nightly job");
    assert_eq!(key["rate_limit"]["requests"], 50);
    assert_eq!(key["customer_id"], "acme");
    assert_eq!(
        key["permissions"],
        json!(["orders:write"]),
        "nothing dropped"
    );
    assert!(browser.text("h1").contains("renamed"));
    assert!(browser.text("ul.locks").contains("customer_id"));
    assert_eq!(
        unexpected(browser.console_errors(), 422),
        Vec::<String>::new()
    );
}

const INGEST_TOKEN: &str = "ingest-token-for-the-dashboard-tests-0123456789";

#[test]
fn a_key_page_charts_its_requests_and_lists_its_log_and_audit_history() {
    let Some(ui) = Ui::start(&[("KEYGATE_INGEST_TOKEN", INGEST_TOKEN)]) else {
        return;
    };
    let browser = &ui.browser;
    let key_id = ui.key("charted", None);
    let other = ui.key("quiet", None);
    ui.keygate.report_usage(
        INGEST_TOKEN,
        "charted",
        &key_id,
        [
            ("ok", "/v1/orders", 10),
            ("ok", "/v1/orders", 20),
            ("ok", "/v1/orders/7", 4_000),
            ("rate_limited", "/v1/orders", 30),
        ],
    );
    ui.keygate
        .report_usage(INGEST_TOKEN, "quiet", &other, [("ok", "/v1/other", 5)]);
    let (status, body) = ui.keygate.call(
        Method::POST,
        &format!("/v1/keys/{key_id}/regenerate"),
        Some(json!({"grace_period_seconds": 3600})),
    );
    assert_eq!(status, 200, "{body}");

    ui.sign_in(&ui.keygate.token);
    browser.wait_for_path("/ui/keys");
    // The list's sparkline counts the last 36 hours.
    let spark = browser.run(&format!(
        "return [...document.querySelectorAll('tbody tr')].find(row => row.textContent.includes('{key_id}')).querySelector('svg.spark').getAttribute('aria-label')"
    ));
    assert_eq!(spark, json!("4 requests in the last 36 hours"));

    browser.click(&format!("tbody th a[href='/ui/keys/{key_id}']"));
    browser.wait_for_path(&format!("/ui/keys/{key_id}"));
    assert!(
        browser.has("#grace-until time"),
        "the previous secret's grace"
    );
    let drawn = browser.run(
        "return [...document.querySelectorAll('svg.bars rect')].map(rect => rect.getAttribute('class'))",
    );
    let drawn: Vec<String> = serde_json::from_value(drawn).expect("classes");
    assert!(drawn.contains(&"o-ok".to_owned()), "{drawn:?}");
    assert!(drawn.contains(&"o-rate_limited".to_owned()), "{drawn:?}");
    let legend = browser.text("#chart-summary");
    assert!(legend.contains("ok: 3"), "{legend}");
    assert!(legend.contains("rate_limited: 1"), "{legend}");
    let logged = |browser: &Browser| {
        let routes = browser.run(
            "return [...document.querySelectorAll('main table')[0].querySelectorAll('tbody tr td.id')].map(cell => cell.textContent)",
        );
        serde_json::from_value::<Vec<String>>(routes).expect("routes")
    };
    assert_eq!(logged(browser).len(), 4, "this key's requests only");

    // The log's outcome filter.
    browser.run("document.querySelector('#k-outcome').value = 'rate_limited'");
    browser.click("form[aria-label=\"Filter this key's requests\"] button[type=submit]");
    poll(Duration::from_secs(10), "the filtered log", || {
        (logged(browser).len() == 1).then_some(())
    });
    assert!(browser.path().starts_with(&format!("/ui/keys/{key_id}")));

    // The audit history: created, then regenerated.
    let actions = browser.run(
        "return [...document.querySelectorAll('table')].pop().querySelectorAll('tbody td code').length",
    );
    assert_eq!(actions, json!(2));
    assert!(browser.source().contains("key.regenerate"));

    // The Logs and Audit pages, with the API's filters.
    ui.goto(&format!("/ui/logs?key_id={other}"));
    assert!(browser.source().contains("/v1/other"));
    assert!(!browser.source().contains("/v1/orders"));
    ui.goto("/ui/audit?action=key.regenerate");
    assert!(browser.source().contains(&key_id));
    assert!(!browser.source().contains(&other));
    ui.goto("/ui/logs?since=not-a-time");
    browser.wait_for("[role=alert]");
    assert!(browser.text("[role=alert]").contains("RFC 3339"));
    assert_eq!(
        unexpected(browser.console_errors(), 400),
        Vec::<String>::new()
    );
}

#[test]
fn an_admin_manages_users_and_generates_a_key_for_one() {
    let Some(ui) = Ui::start(&[]) else { return };
    let browser = &ui.browser;
    ui.keygate.catalogue(&["orders:read"]);
    ui.sign_in(&ui.keygate.token);
    browser.wait_for_path("/ui/keys");
    browser.click("nav a[href='/ui/users']");
    browser.wait_for_path("/ui/users");

    // A bad address is refused next to the form; a good one opens the new user's page.
    browser.fill("#u-email", "not an address");
    browser.click("form[action='/ui/users'] button[type=submit]");
    browser.wait_for("#u-problem");
    browser.fill("#u-email", "dana@example.com");
    browser.click("form[action='/ui/users'] button[type=submit]");
    poll(Duration::from_secs(10), "the user's page", || {
        browser
            .path()
            .starts_with("/ui/users/usr_")
            .then(|| browser.path())
    });
    let user_id = browser.path().trim_start_matches("/ui/users/").to_owned();
    let user = || {
        ui.keygate
            .call(Method::GET, &format!("/v1/users/{user_id}"), None)
            .1
    };
    assert_eq!(user()["role"], "member");
    assert!(browser.text("#ceiling").contains("Permissions"));

    // Role.
    browser.run("document.querySelector('#r-role').value = 'key_manager'");
    browser.click("form[action$='/role'] button[type=submit]");
    poll(Duration::from_secs(10), "the new role", || {
        (user()["role"] == "key_manager").then_some(())
    });

    // A token, shown once, that signs its user in.
    browser.fill("#t-name", "laptop");
    browser.click("form[action$='/tokens'] button[type=submit]");
    browser.wait_for("dialog[data-show-once]:modal input.secret");
    let token = browser.run("return document.querySelector('input.secret').value");
    let token = token.as_str().expect("a token").to_owned();
    let me = reqwest::blocking::Client::new()
        .get(ui.keygate.url("/v1/users/me"))
        .bearer_auth(&token)
        .send()
        .expect("keygate answers");
    assert_eq!(me.status(), 200);
    assert!(
        !ui.keygate.log().contains(&token),
        "the token is not logged"
    );
    // Escape on a page that has just loaded (no user activation yet) still asks first.
    browser.escape();
    browser.wait_for("#once-confirm:modal");
    assert!(browser.has("dialog[data-show-once]:modal input.secret"));
    assert_eq!(browser.focused(), "Go back");
    browser.click("[data-confirm-close]");
    browser.wait_for_path(&format!("/ui/users/{user_id}"));
    assert!(browser.text("tbody").contains("laptop"));

    // Seed 001: open the user and generate a key for them.
    browser.click("#key-for-user");
    browser.wait_for("#c-owner");
    assert_eq!(
        browser.run("return document.querySelector('#c-owner').value"),
        json!(user_id)
    );
    browser.fill("#c-name", "for dana");
    browser.click("#create-dialog button[type=submit]");
    browser.wait_for("input.secret");
    let (_, keys) = ui
        .keygate
        .call(Method::GET, &format!("/v1/keys?owner_id={user_id}"), None);
    assert_eq!(keys["items"][0]["name"], "for dana");
    let key_id = keys["items"][0]["key_id"]
        .as_str()
        .expect("an id")
        .to_owned();

    // Deactivate, disabling their keys.
    ui.goto(&format!("/ui/users/{user_id}"));
    browser.click("#deactivate-user");
    browser.wait_for("dialog#deactivate-dialog:modal #d-disable-keys");
    assert_eq!(browser.focused(), "Cancel", "not the destructive button");
    browser.click("#deactivate-dialog button[type=submit]");
    poll(Duration::from_secs(10), "the user deactivated", || {
        (user()["active"] == false).then_some(())
    });
    let (_, key) = ui
        .keygate
        .call(Method::GET, &format!("/v1/keys/{key_id}"), None);
    assert_eq!(key["status"], "disabled");
    let me = reqwest::blocking::Client::new()
        .get(ui.keygate.url("/v1/users/me"))
        .bearer_auth(&token)
        .send()
        .expect("keygate answers");
    assert_eq!(me.status(), 401, "their token stopped");
    assert_eq!(
        unexpected(browser.console_errors(), 422),
        Vec::<String>::new()
    );

    // Members get no Users page.
    let (_, member_token, _) = ui.user("member@example.com", "member");
    browser.click("header form button");
    browser.wait_for_path("/ui/sign-in");
    ui.sign_in(&member_token);
    browser.wait_for_path("/ui/keys");
    assert!(!browser.has("nav a[href='/ui/users']"));
    ui.goto("/ui/users");
    assert!(browser.source().contains("needs the admin role"));
}
