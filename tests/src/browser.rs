//! A real browser for the dashboard's tests: Debian's headless Chromium, driven over WebDriver
//! by chromedriver (started here, on a free port) through fantoccini. Nothing is downloaded. Its
//! calls block (on a runtime of its own), like the rest of the end-to-end harness.
//!
//! Where chromedriver is missing, [`Browser::start`] returns `None` after saying loudly that the
//! browser tests are skipped, except under `CI=true`, where it fails: CI runs them.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde_json::{Value, json};

use crate::{free_port, poll};

#[derive(Debug)]
pub struct Browser {
    runtime: tokio::runtime::Runtime,
    pub client: Client,
    driver: Child,
    /// Chromium's profile and downloads.
    pub dir: tempfile::TempDir,
}

fn which(program: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| std::path::Path::new(dir).join(program))
        .find(|path| path.is_file())
}

impl Browser {
    /// Chromium under a fresh profile; `None` (and a loud note) where there is none outside CI.
    pub fn start() -> Option<Self> {
        let (Some(driver), Some(chromium)) = (which("chromedriver"), which("chromium")) else {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "chromium and chromedriver are missing: CI runs the dashboard's browser tests \
                 (scripts/test installs them with apt-get)"
            );
            eprintln!(
                "\n!!! chromium/chromedriver not found: the dashboard's browser tests are SKIPPED \
                 (apt-get install chromium chromium-driver)\n"
            );
            return None;
        };
        let port = free_port();
        // Its own process group, Chromium included, so that nothing outlives the test: a
        // leaked browser holds inotify instances, and the next `wrangler dev` fails with EMFILE.
        let driver = Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("chromedriver starts");
        let dir = tempfile::tempdir().expect("a profile directory");
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--window-size=1680,1050", "--no-first-run",
                    format!("--user-data-dir={}", dir.path().join("profile").display()),
                ],
                "prefs": {
                    "download.default_directory": dir.path().join("downloads"),
                    "download.prompt_for_download": false,
                },
            },
            "goog:loggingPrefs": { "browser": "ALL" },
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!("an object")
        };
        let url = format!("http://127.0.0.1:{port}");
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let runtime = tokio::runtime::Runtime::new().expect("a runtime");
        let mut client = None;
        for _ in 0..100 {
            let mut builder = ClientBuilder::new(connector.clone());
            builder.capabilities(capabilities.clone());
            match runtime.block_on(builder.connect(&url)) {
                Ok(connected) => {
                    client = Some(connected);
                    break;
                }
                // chromedriver is still starting.
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
        let client = client.expect("chromedriver answers within 10 s");
        Some(Self {
            runtime,
            client,
            driver,
            dir,
        })
    }

    pub fn goto(&self, url: &str) {
        self.block(self.client.goto(url)).expect("the page loads");
    }

    fn block<T>(&self, future: impl Future<Output = T>) -> T {
        self.runtime.block_on(future)
    }

    pub fn path(&self) -> String {
        self.block(self.client.current_url())
            .expect("the current URL")
            .path()
            .to_owned()
    }

    pub fn text(&self, css: &str) -> String {
        self.block(async {
            self.client
                .find(Locator::Css(css))
                .await
                .unwrap_or_else(|error| panic!("{css}: {error}"))
                .text()
                .await
                .expect("its text")
        })
    }

    pub fn has(&self, css: &str) -> bool {
        !self
            .block(self.client.find_all(Locator::Css(css)))
            .expect("a query")
            .is_empty()
    }

    pub fn fill(&self, css: &str, value: &str) {
        self.block(async {
            let field = self
                .client
                .find(Locator::Css(css))
                .await
                .unwrap_or_else(|error| panic!("{css}: {error}"));
            field.clear().await.expect("cleared");
            field.send_keys(value).await.expect("typed");
        });
    }

    pub fn click(&self, css: &str) {
        self.block(async {
            self.client
                .find(Locator::Css(css))
                .await
                .unwrap_or_else(|error| panic!("{css}: {error}"))
                .click()
                .await
                .expect("clicked");
        });
    }

    pub fn source(&self) -> String {
        self.block(self.client.source()).expect("the page source")
    }

    /// Every cookie of the current page's site, `HttpOnly` ones too: (name, value).
    pub fn cookies(&self) -> Vec<(String, String)> {
        self.block(self.client.get_all_cookies())
            .expect("the cookies")
            .into_iter()
            .map(|cookie| (cookie.name().to_owned(), cookie.value().to_owned()))
            .collect()
    }

    /// A PNG of the window, written to `path`.
    pub fn screenshot(&self, path: &std::path::Path) {
        let png = self.block(self.client.screenshot()).expect("a screenshot");
        std::fs::write(path, png).expect("the screenshot written");
    }

    /// Runs `script` (which calls `arguments[0]` with its result) and returns the result.
    pub fn run_async(&self, script: &str) -> Value {
        self.block(self.client.execute_async(script, Vec::new()))
            .unwrap_or_else(|error| panic!("{script}: {error}"))
    }

    /// Types `keys` into whatever has focus (`fantoccini::key::Key` characters for Tab, Enter,
    /// Escape...), as a keyboard would.
    pub fn press(&self, keys: &str) {
        self.block(async {
            self.client
                .active_element()
                .await
                .expect("the focused element")
                .send_keys(keys)
                .await
                .expect("typed");
        });
    }

    /// Presses Escape in whatever has focus.
    pub fn escape(&self) {
        self.press(&char::from(fantoccini::key::Key::Escape).to_string());
    }

    /// The focused element's `id`, or its text when it has none.
    pub fn focused(&self) -> String {
        self.run("const e = document.activeElement; return e.id || e.textContent.trim()")
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Grants the page's origin a permission (`clipboard-read`, ...), as WebDriver's Permissions
    /// extension does.
    pub fn grant(&self, permission: &str) {
        let command = Extension {
            path: "permissions",
            body: json!({ "descriptor": { "name": permission }, "state": "granted" }),
        };
        self.block(self.client.issue_cmd(command))
            .unwrap_or_else(|error| panic!("granting {permission}: {error}"));
    }

    /// Runs `script` in the page and returns what it returns.
    pub fn run(&self, script: &str) -> Value {
        self.block(self.client.execute(script, Vec::new()))
            .unwrap_or_else(|error| panic!("{script}: {error}"))
    }

    /// Waits (up to 10 s) until the page's path is `path`.
    pub fn wait_for_path(&self, path: &str) {
        poll(
            Duration::from_secs(10),
            &format!("the browser reaches {path}"),
            || (self.path() == path).then_some(()),
        );
    }

    /// Waits (up to 10 s) until the page has an element matching `css`.
    pub fn wait_for(&self, css: &str) {
        for _ in 0..200 {
            if self.has(css) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "no element {css} within 10 s; console: {:?}\npage:\n{}",
            self.console(),
            self.source()
        );
    }

    /// The console's messages since the last call, as chromedriver collected them
    /// (`goog:loggingPrefs`): CSP violations and script errors are `SEVERE`.
    pub fn console(&self) -> Vec<Value> {
        let command = Extension {
            path: "se/log",
            body: json!({ "type": "browser" }),
        };
        match self.block(self.client.issue_cmd(command)) {
            Ok(Value::Array(entries)) => entries,
            other => panic!("chromedriver's log: {other:?}"),
        }
    }

    /// The console's errors since the last call.
    pub fn console_errors(&self) -> Vec<String> {
        self.console()
            .into_iter()
            .filter(|entry| entry["level"] == "SEVERE")
            .map(|entry| entry["message"].as_str().unwrap_or_default().to_owned())
            .collect()
    }
}

impl Drop for Browser {
    /// Ends the session (chromedriver quits Chromium), then the whole process group, whatever
    /// the session's end said: a panicking test must not leave a browser behind either.
    fn drop(&mut self) {
        let _ = self.runtime.block_on(self.client.clone().close());
        if let Ok(pid) = i32::try_from(self.driver.id()) {
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
        }
        let _ = self.driver.wait();
    }
}

/// A WebDriver command fantoccini does not wrap: `POST /session/{id}/<path>` with `body`
/// (chromedriver's `se/log`, the Permissions extension's `permissions`).
#[derive(Debug)]
struct Extension {
    path: &'static str,
    body: Value,
}

impl WebDriverCompatibleCommand for Extension {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/{}",
            session_id.unwrap_or_default(),
            self.path
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(self.body.to_string()))
    }
}
