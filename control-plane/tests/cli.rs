//! The real `keygate` binary end to end: `serve` on a free port, the bootstrap token read from its
//! output, then the CLI against it (create with --output, list, revoke, users, audit), and a
//! graceful stop on SIGTERM. Neither the key nor a token may show up in the server's log.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{Backend, fresh_database};
use keygate_shared::KeyFormat;
use serde_json::Value;

const KEYGATE: &str = env!("CARGO_BIN_EXE_keygate");

struct Server {
    child: Child,
    url: String,
    token: String,
    log: std::path::PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("an address").port()
}

fn start(database_url: &str, dir: &Path) -> Server {
    start_with(database_url, dir, &[])
}

fn start_with(database_url: &str, dir: &Path, env: &[(&str, &str)]) -> Server {
    let port = free_port();
    let log = dir.join("server.log");
    let token_file = dir.join(format!("admin-{port}.token"));
    let child = Command::new(KEYGATE)
        .arg("serve")
        .envs(env.iter().copied())
        .env("DATABASE_URL", database_url)
        .env("KEYGATE_LISTEN", format!("127.0.0.1:{port}"))
        .env("KEYGATE_BOOTSTRAP_EMAIL", "root@example.com")
        .env("KEYGATE_BOOTSTRAP_TOKEN_FILE", &token_file)
        .env("KEYGATE_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).expect("a log file"))
        .spawn()
        .expect("keygate serve starts");
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "keygate serve did not listen within 30 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The first admin's token is in an owner-only file, never on stdout or in the log.
    let mode = std::fs::metadata(&token_file)
        .expect("serve wrote the first admin's token file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let token = std::fs::read_to_string(&token_file)
        .expect("the token")
        .trim()
        .to_owned();
    assert!(token.starts_with("kgcp_live_"), "{token}");
    Server {
        child,
        url,
        token,
        log,
    }
}

fn cli(server: &Server, token: Option<&str>, args: &[&str]) -> Output {
    let mut command = Command::new(KEYGATE);
    command
        .args(args)
        .env("KEYGATE_URL", &server.url)
        .env_remove("KEYGATE_TOKEN");
    if let Some(token) = token {
        command.env("KEYGATE_TOKEN", token);
    }
    command.output().expect("the CLI runs")
}

#[track_caller]
fn ok(output: &Output) -> String {
    assert!(
        output.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn json(output: &Output) -> Value {
    serde_json::from_str(&ok(output)).expect("--json prints JSON")
}

async fn drive(backend: Backend) {
    let Some((database_url, _fresh)) = fresh_database(backend).await else {
        return;
    };
    let dir = tempfile::tempdir().expect("a temporary directory");
    let server = start(&database_url, dir.path());
    let admin = Some(server.token.as_str());

    ok(&cli(
        &server,
        admin,
        &[
            "permissions",
            "add",
            "customer:read",
            "--description",
            "Read customers",
        ],
    ));
    let key_file = dir.path().join("ci.apikey");
    let key_path = key_file.to_str().unwrap();
    let created = cli(
        &server,
        admin,
        &[
            "keys",
            "create",
            "--name",
            "ci deploy",
            "--permission",
            "customer:read",
            "--expires-in-days",
            "30",
            "--output",
            key_path,
        ],
    );
    let shown = ok(&created);
    let key = std::fs::read_to_string(&key_file)
        .expect("the key file")
        .trim()
        .to_owned();
    let parsed = KeyFormat::new("kg")
        .unwrap()
        .parse(&key)
        .expect("the file holds a keygate key");
    let key_id = parsed.key_id().to_string();
    assert!(
        !shown.contains(&key),
        "with --output the key is not printed"
    );
    assert!(shown.contains(&key_id));
    let mode = std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the key file is readable by its owner only");

    let again = cli(
        &server,
        admin,
        &["keys", "create", "--name", "again", "--output", key_path],
    );
    assert_eq!(
        again.status.code(),
        Some(2),
        "an existing file is not overwritten"
    );
    assert_eq!(std::fs::read_to_string(&key_file).unwrap().trim(), key);

    let table = ok(&cli(&server, admin, &["keys", "list"]));
    let row = table
        .lines()
        .find(|line| line.starts_with(&key_id))
        .expect("the key is listed");
    assert!(
        row.contains("ci deploy") && row.contains("active"),
        "{table}"
    );
    let listed = json(&cli(
        &server,
        admin,
        &["keys", "list", "--json", "--status", "active"],
    ));
    assert_eq!(listed["items"][0]["key_id"], key_id.as_str());

    ok(&cli(
        &server,
        admin,
        &["permissions", "add", "customer:write"],
    ));
    ok(&cli(
        &server,
        admin,
        &[
            "permissions",
            "set",
            "support",
            "--permission",
            "customer:*",
            "--description",
            "Support desk",
        ],
    ));
    let catalogue = ok(&cli(&server, admin, &["permissions", "list"]));
    assert!(
        catalogue.contains("support") && catalogue.contains("customer:write"),
        "{catalogue}"
    );

    let updated = json(&cli(
        &server,
        admin,
        &[
            "keys",
            "update",
            &key_id,
            "--name",
            "ci deploy v2",
            "--set",
            "support",
            "--rate-limit",
            "10/1",
            "--never-expires",
            "--json",
        ],
    ));
    assert_eq!(updated["name"], "ci deploy v2");
    assert_eq!(
        updated["grants"],
        serde_json::json!(["customer:*", "customer:read"])
    );
    assert_eq!(updated["expires_at"], Value::Null);
    assert_eq!(updated["rate_limit"]["requests"], 10);
    let disabled = json(&cli(
        &server,
        admin,
        &["keys", "disable", &key_id, "--json"],
    ));
    assert_eq!(disabled["status"], "disabled");
    let enabled = json(&cli(&server, admin, &["keys", "enable", &key_id, "--json"]));
    assert_eq!(enabled["status"], "active");

    let rotated_file = dir.path().join("rotated.apikey");
    let rotated = ok(&cli(
        &server,
        admin,
        &[
            "keys",
            "regenerate",
            &key_id,
            "--grace-period-seconds",
            "600",
            "--output",
            rotated_file.to_str().unwrap(),
        ],
    ));
    let rotated_key = std::fs::read_to_string(&rotated_file)
        .unwrap()
        .trim()
        .to_owned();
    assert!(rotated_key.contains(&key_id) && rotated_key != key);
    assert!(!rotated.contains(&rotated_key));
    assert!(rotated.contains("previous_secret_expires_at"));

    ok(&cli(
        &server,
        admin,
        &["keys", "revoke", &key_id, "--reason", "rotated out"],
    ));
    let revoked = json(&cli(&server, admin, &["keys", "show", &key_id, "--json"]));
    assert_eq!(revoked["status"], "revoked");
    assert_eq!(revoked["revoked_reason"], "rotated out");
    let refused = cli(&server, admin, &["keys", "enable", &key_id]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("key_revoked"));

    let user = json(&cli(
        &server,
        admin,
        &[
            "users",
            "create",
            "--email",
            "dev@example.com",
            "--role",
            "member",
            "--json",
        ],
    ));
    let user_id = user["user_id"].as_str().unwrap();
    let issued = json(&cli(
        &server,
        admin,
        &["users", "token", user_id, "--name", "laptop", "--json"],
    ));
    let member_token = issued["token"].as_str().unwrap().to_owned();
    let me = json(&cli(&server, Some(&member_token), &["whoami", "--json"]));
    assert_eq!(me["role"], "member");
    assert!(
        me["token_expires_at"].is_string(),
        "new tokens expire: {me}"
    );
    assert!(ok(&cli(&server, Some(&member_token), &["whoami"])).contains("token_expires_at:"));
    // The member's own tokens: a second one, listed, then revoked by the member.
    let spare = json(&cli(
        &server,
        admin,
        &[
            "users",
            "token",
            user_id,
            "--name",
            "spare",
            "--expires-in-days",
            "3",
            "--json",
        ],
    ));
    let spare_id = spare["token_id"].as_str().unwrap().to_owned();
    let mine = json(&cli(
        &server,
        Some(&member_token),
        &["tokens", "list", "--json"],
    ));
    let mut names: Vec<&str> = mine
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["laptop", "spare"]);
    assert!(ok(&cli(&server, Some(&member_token), &["tokens", "list"])).contains("EXPIRES_AT"));
    ok(&cli(
        &server,
        Some(&member_token),
        &["tokens", "revoke", &spare_id],
    ));
    let spare_token = spare["token"].as_str().unwrap();
    assert_eq!(
        cli(&server, Some(spare_token), &["whoami"]).status.code(),
        Some(1)
    );
    let forbidden = cli(&server, Some(&member_token), &["users", "list"]);
    assert_eq!(forbidden.status.code(), Some(1));

    let own = json(&cli(
        &server,
        Some(&member_token),
        &["keys", "create", "--name", "mine", "--json"],
    ));
    let own_id = own["key_id"].as_str().unwrap();
    let refused_delete = cli(&server, Some(&member_token), &["keys", "delete", own_id]);
    assert_eq!(refused_delete.status.code(), Some(2), "delete wants --yes");
    ok(&cli(
        &server,
        Some(&member_token),
        &["keys", "delete", own_id, "--yes"],
    ));
    let gone = cli(&server, Some(&member_token), &["keys", "show", own_id]);
    assert_eq!(gone.status.code(), Some(1));
    let plain = ok(&cli(
        &server,
        Some(&member_token),
        &["keys", "create", "--name", "printed"],
    ));
    assert!(plain.contains("shown only this once"));

    // Ceilings: the admin allows members one permission for 30 days; the member sees it, and a
    // key above it is refused with the reason.
    let set = json(&cli(
        &server,
        admin,
        &[
            "ceilings",
            "set",
            "--role",
            "member",
            "--permission",
            "customer:read",
            "--max-lifetime-days",
            "30",
            "--json",
        ],
    ));
    assert_eq!(set["source"], "role");
    assert_eq!(
        set["keys_above"]["count"], 1,
        "the never-expiring 'printed' key"
    );
    let shown = ok(&cli(&server, Some(&member_token), &["ceilings", "show"]));
    assert!(shown.contains("max_lifetime_days") && shown.contains("customer:read"));
    let above = cli(
        &server,
        Some(&member_token),
        &[
            "keys",
            "create",
            "--name",
            "forever",
            "--permission",
            "customer:read",
        ],
    );
    assert_eq!(above.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&above.stderr).contains("never expires"));
    ok(&cli(
        &server,
        Some(&member_token),
        &[
            "keys",
            "create",
            "--name",
            "monthly",
            "--permission",
            "customer:read",
            "--expires-in-days",
            "30",
        ],
    ));
    let reset = json(&cli(
        &server,
        admin,
        &["ceilings", "reset", "--role", "member", "--json"],
    ));
    assert_eq!(reset["source"], "default");

    let promoted = json(&cli(
        &server,
        admin,
        &["users", "set-role", user_id, "key_manager", "--json"],
    ));
    assert_eq!(promoted["role"], "key_manager");
    let shown_user = json(&cli(&server, admin, &["users", "show", user_id, "--json"]));
    // The member's "laptop" token (the "spare" one is revoked already; both may share a second).
    let token_id = shown_user["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|token| token["name"] == "laptop")
        .and_then(|token| token["token_id"].as_str())
        .unwrap()
        .to_owned();
    ok(&cli(
        &server,
        admin,
        &["users", "revoke-token", user_id, &token_id],
    ));
    assert_eq!(
        cli(&server, Some(&member_token), &["whoami"]).status.code(),
        Some(1)
    );
    let users_table = ok(&cli(&server, admin, &["users", "list"]));
    assert!(users_table.contains("dev@example.com") && users_table.contains("root@example.com"));
    let deactivated = json(&cli(
        &server,
        admin,
        &["users", "deactivate", user_id, "--json"],
    ));
    assert_eq!(deactivated["active"], false);
    let audit = json(&cli(
        &server,
        admin,
        &["audit", "--json", "--action", "key.revoke"],
    ));
    assert_eq!(audit["items"][0]["target_id"], key_id.as_str());

    let anonymous = cli(&server, None, &["keys", "list"]);
    assert_eq!(anonymous.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&anonymous.stderr).contains("KEYGATE_TOKEN"));

    // The database already has its admin: bootstrap refuses, prints no token and leaves no file.
    let again = dir.path().join("again.token");
    let bootstrap = Command::new(KEYGATE)
        .args(["bootstrap", "--bootstrap-token-file"])
        .arg(&again)
        .env("DATABASE_URL", &database_url)
        .output()
        .unwrap();
    assert_eq!(bootstrap.status.code(), Some(1));
    assert!(!String::from_utf8_lossy(&bootstrap.stdout).contains("kgcp_"));
    assert!(!again.exists());
    // Without a file, and with no terminal to show it on, bootstrap writes the token nowhere.
    let piped = Command::new(KEYGATE)
        .args(["bootstrap"])
        .env("DATABASE_URL", &database_url)
        .output()
        .unwrap();
    assert_eq!(piped.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&piped.stderr).contains("--bootstrap-token-file"));

    // SIGTERM: a graceful stop, exit 0.
    let mut server = server;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(server.child.id()).unwrap()),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = server.child.wait().unwrap();
    assert!(
        status.success(),
        "keygate serve stops cleanly on SIGTERM: {status:?}"
    );

    let log = std::fs::read_to_string(&server.log).unwrap();
    assert!(
        log.contains("route=\"/v1/keys\""),
        "the log has request lines:\n{log}"
    );
    for secret in [&key, &server.token, &member_token] {
        assert!(
            !log.contains(secret.as_str()),
            "a secret reached the server's log"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_against_the_real_binary_on_sqlite() {
    drive(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_against_the_real_binary_on_postgres() {
    drive(Backend::Postgres).await;
}

/// `keygate assertion-key generate` writes the private JWK owner-only (and never over a file),
/// prints only the public one, and `serve` publishes the JWKS at `/.well-known/jwks.json`; an
/// assertion signed with the private key verifies against what is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assertion_keys_are_generated_owner_only_and_their_jwks_served() {
    let dir = tempfile::tempdir().expect("temp dir");
    let key_file = dir.path().join("assertion.jwk");
    let generate = || {
        Command::new(KEYGATE)
            .args([
                "assertion-key",
                "generate",
                "--kid",
                "kg-2026-12",
                "--output",
            ])
            .arg(&key_file)
            .output()
            .expect("keygate runs")
    };
    let first = generate();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let public: Value = serde_json::from_slice(&first.stdout).expect("the public JWK");
    assert_eq!(public["kid"], "kg-2026-12");
    assert!(public.get("d").is_none(), "the private part is not printed");
    let mode = std::fs::metadata(&key_file)
        .expect("key file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let private = std::fs::read_to_string(&key_file).expect("read");
    let jwk = keygate_shared::SigningJwk::parse(private.trim()).expect("an edge-readable key");
    let again = generate();
    assert!(
        !again.status.success(),
        "an existing key file is never overwritten"
    );
    assert_eq!(std::fs::read_to_string(&key_file).unwrap(), private);

    let jwks = serde_json::json!({ "keys": [public] }).to_string();
    let jwks_file = dir.path().join("jwks.json");
    std::fs::write(&jwks_file, &jwks).expect("jwks file");
    let url = format!("sqlite://{}", dir.path().join("keygate.db").display());
    let server = start_with(
        &url,
        dir.path(),
        &[("KEYGATE_ASSERTION_JWKS_FILE", jwks_file.to_str().unwrap())],
    );
    let served = reqwest::get(format!("{}/.well-known/jwks.json", server.url))
        .await
        .expect("served");
    assert_eq!(served.status(), 200);
    let served = served.text().await.expect("body");
    let claims = keygate_shared::AssertionClaims {
        iss: "keygate".into(),
        aud: "https://api.example.com".into(),
        sub: "4fJ0tq8HvQmZ2cL9sWbN1e".into(),
        owner_id: "usr_1".into(),
        customer_id: None,
        permissions: vec!["customer:read".into()],
        environment: "production".into(),
        iat: 1_800_000_000,
        exp: 1_800_000_060,
    };
    let token = keygate_origin::sign(&jwk, &claims).expect("signs");
    let verifier =
        keygate_origin::AssertionVerifier::new(&served, "keygate", "https://api.example.com")
            .expect("the served JWKS");
    assert_eq!(verifier.verify(&token, 1_800_000_001), Ok(claims));
    let log = std::fs::read_to_string(&server.log).unwrap_or_default();
    assert!(
        !log.contains(jwk.d.as_str()),
        "the private key reached the log"
    );
}

/// With `KEYGATE_METRICS_TOKEN`, `/metrics` answers only the scraper that sends it; the health
/// routes stay open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_can_require_a_token() {
    const TOKEN: &str = "a-metrics-token-of-at-least-32-chars";
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("keygate.db").display());
    let server = start_with(&url, dir.path(), &[("KEYGATE_METRICS_TOKEN", TOKEN)]);
    let client = reqwest::Client::new();
    let get = |path: &str, token: Option<&str>| {
        let mut request = client.get(format!("{}{path}", server.url));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    assert_eq!(get("/metrics", None).await.unwrap().status(), 401);
    assert_eq!(
        get("/metrics", Some("wrong-token-wrong-token-wrong-token"))
            .await
            .unwrap()
            .status(),
        401
    );
    let scraped = get("/metrics", Some(TOKEN)).await.unwrap();
    assert_eq!(scraped.status(), 200);
    assert!(
        scraped
            .text()
            .await
            .unwrap()
            .contains("keygate_keys{status=\"active\"}")
    );
    assert_eq!(get("/healthz", None).await.unwrap().status(), 200);
    let log = std::fs::read_to_string(&server.log).unwrap_or_default();
    assert!(!log.contains(TOKEN), "the metrics token reached the log");
}
