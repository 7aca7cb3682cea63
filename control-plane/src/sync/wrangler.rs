//! The local KV store that `wrangler dev` reads (`.wrangler/state`, or `--persist-to`), written
//! through wrangler itself: `wrangler kv bulk put|get|delete --local` and `wrangler kv key list
//! --local`. For the dev loop and the end-to-end tests, so they run the same pusher as production.
//! Each call starts wrangler (about 1.5 s); a call that fails, such as one that found the store
//! busy with the running `wrangler dev`, is tried again like any other failed push.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};
use tokio::process::Command;

use super::sink::{KvEntry, KvPage, KvSink, Listed, SinkError, Written, bulk_body, version_in};

#[derive(Debug, Clone)]
pub struct WranglerKv {
    /// The wrangler executable.
    pub program: PathBuf,
    /// wrangler.toml: which Worker's bindings `binding` refers to.
    pub config: PathBuf,
    /// The KV binding name in that configuration (`KEYS`).
    pub binding: String,
    /// `wrangler dev --persist-to`, if the Worker runs with one.
    pub persist_to: Option<PathBuf>,
    /// A call that takes longer is killed and counts as failed.
    pub timeout: Duration,
}

impl WranglerKv {
    async fn run(&self, args: &[&str], file: Option<&Value>) -> Result<String, SinkError> {
        // The bulk body goes through a file, as wrangler takes it; it holds digests, never keys.
        let body = match file {
            Some(value) => {
                let file = tempfile::Builder::new()
                    .prefix("keygate-kv-")
                    .suffix(".json")
                    .tempfile()
                    .map_err(|error| SinkError::Unavailable(format!("temp file: {error}")))?;
                std::fs::write(file.path(), value.to_string())
                    .map_err(|error| SinkError::Unavailable(format!("temp file: {error}")))?;
                Some(file)
            }
            None => None,
        };
        let mut command = Command::new(&self.program);
        command.arg("kv").args(args);
        if let Some(file) = &body {
            command.arg(file.path());
        }
        command
            .args(["--binding", &self.binding, "--local", "--config"])
            .arg(&self.config);
        if let Some(dir) = &self.persist_to {
            command.arg("--persist-to").arg(dir);
        }
        command
            .env("WRANGLER_SEND_METRICS", "false")
            .env("CLOUDFLARE_CF_FETCH_ENABLED", "false")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let child = command.spawn().map_err(|error| {
            SinkError::Unavailable(format!("cannot run {}: {error}", self.program.display()))
        })?;
        let output = tokio::time::timeout(self.timeout, child.wait_with_output())
            .await
            .map_err(|_| {
                SinkError::Unavailable(format!(
                    "wrangler kv {} took over {:?}",
                    args[0], self.timeout
                ))
            })?
            .map_err(|error| SinkError::Unavailable(format!("wrangler: {error}")))?;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        if output.status.success() {
            return Ok(stdout);
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last = stderr
            .lines()
            .chain(stdout.lines())
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .rfind(|line| line.contains("ERROR") || line.contains("rror"))
            .unwrap_or("no error message")
            .chars()
            .filter(|c| !c.is_control())
            .take(300)
            .collect::<String>();
        Err(SinkError::Unavailable(format!(
            "wrangler kv {} {} failed ({}): {last}",
            args[0],
            args.get(1).unwrap_or(&""),
            output.status
        )))
    }
}

impl KvSink for WranglerKv {
    fn describe(&self) -> String {
        format!(
            "wrangler-local:{}:{}",
            self.binding,
            self.persist_to.as_ref().map_or_else(
                || ".wrangler/state".to_owned(),
                |dir| dir.display().to_string()
            )
        )
    }

    async fn put(&self, entries: &[KvEntry]) -> Result<Written, SinkError> {
        self.run(&["bulk", "put"], Some(&bulk_body(entries)))
            .await?;
        Ok(Written::default())
    }

    /// The local store has no limit of its own, and each call costs a wrangler start.
    fn max_gets(&self) -> usize {
        super::MAX_BULK_PAIRS
    }

    async fn get(&self, names: &[String]) -> Result<HashMap<String, Option<String>>, SinkError> {
        #[derive(Deserialize)]
        struct Read {
            value: Option<String>,
        }
        let stdout = self.run(&["bulk", "get"], Some(&json!(names))).await?;
        // `{"<name>": {"value": "<value>" | null}, ...}`, then a line saying "Success!".
        let json = stdout.trim().trim_end_matches("Success!");
        let read: HashMap<String, Read> = serde_json::from_str(json.trim()).map_err(|error| {
            SinkError::Unavailable(format!(
                "unexpected output of wrangler kv bulk get: {error}"
            ))
        })?;
        Ok(read
            .into_iter()
            .map(|(name, read)| (name, read.value))
            .collect())
    }

    async fn delete(&self, names: &[String]) -> Result<Written, SinkError> {
        self.run(&["bulk", "delete", "--force"], Some(&json!(names)))
            .await?;
        Ok(Written::default())
    }

    async fn list(&self, _cursor: Option<&str>) -> Result<KvPage, SinkError> {
        #[derive(Deserialize)]
        struct Key {
            name: String,
            #[serde(default)]
            metadata: Option<Value>,
        }
        let stdout = self.run(&["key", "list"], None).await?;
        let keys: Vec<Key> = serde_json::from_str(stdout.trim()).map_err(|error| {
            SinkError::Unavailable(format!(
                "unexpected output of wrangler kv key list: {error}"
            ))
        })?;
        // The local store lists everything in one page.
        Ok(KvPage {
            entries: keys
                .into_iter()
                .map(|key| Listed {
                    name: key.name,
                    version: version_in(key.metadata),
                })
                .collect(),
            cursor: None,
        })
    }
}
