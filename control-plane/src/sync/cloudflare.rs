//! The Cloudflare REST API for Workers KV: bulk write, read and delete, and key listing, with the
//! same requests `wrangler kv bulk put|get|delete --remote` sends (the e2e contract test compares
//! them).

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use super::sink::{KvEntry, KvPage, KvSink, Listed, SinkError, Written, bulk_body, version_in};

pub const DEFAULT_BASE_URL: &str = "https://api.cloudflare.com/client/v4";
/// Keys per listing page: the API's maximum.
const LIST_PAGE: u32 = 1000;

/// A Cloudflare API token. Never printed.
#[derive(Clone)]
pub struct ApiToken(String);

impl ApiToken {
    pub fn new(token: String) -> Self {
        Self(token)
    }
}

impl fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiToken(<redacted>)")
    }
}

#[derive(Debug, Clone)]
pub struct CloudflareKv {
    http: reqwest::Client,
    /// `{base}/accounts/{account}/storage/kv/namespaces/{namespace}`
    namespace_url: String,
    token: ApiToken,
}

impl CloudflareKv {
    pub fn new(
        base_url: &str,
        account_id: &str,
        namespace_id: &str,
        token: ApiToken,
        timeout: Duration,
    ) -> Result<Self, String> {
        let safe = |what: &str, id: &str| {
            if !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
                Ok(())
            } else {
                Err(format!(
                    "the Cloudflare {what} must be letters, digits and '-'"
                ))
            }
        };
        safe("account id", account_id)?;
        safe("KV namespace id", namespace_id)?;
        if token.0.trim().is_empty() {
            return Err("the Cloudflare API token is empty".into());
        }
        let http = super::http_client(timeout)?;
        Ok(Self {
            http,
            namespace_url: format!(
                "{}/accounts/{account_id}/storage/kv/namespaces/{namespace_id}",
                base_url.trim_end_matches('/')
            ),
            token,
        })
    }

    /// Sends one request and opens the API's envelope: `result` (and `result_info`) on success,
    /// a [`SinkError`] by status otherwise.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Envelope, SinkError> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.namespace_url))
            .bearer_auth(&self.token.0);
        if let Some(body) = body {
            request = request
                .header(CONTENT_TYPE, "application/json")
                .body(body.to_string());
        }
        let response = request
            .send()
            .await
            .map_err(|error| SinkError::Unavailable(error.without_url().to_string()))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let text = response
            .text()
            .await
            .map_err(|error| SinkError::Unavailable(error.without_url().to_string()))?;
        let envelope: Option<Envelope> = serde_json::from_str(&text).ok();
        let reason = || {
            let errors = envelope
                .as_ref()
                .map(|envelope| envelope.describe_errors())
                .unwrap_or_default();
            if errors.is_empty() {
                format!("HTTP {status}")
            } else {
                format!("HTTP {status}: {errors}")
            }
        };
        if status == StatusCode::TOO_MANY_REQUESTS {
            return Err(SinkError::Throttled { retry_after });
        }
        if status.is_server_error() {
            return Err(SinkError::Unavailable(reason()));
        }
        if !status.is_success() {
            return Err(SinkError::Refused(reason()));
        }
        match envelope {
            Some(envelope) if envelope.success => Ok(envelope),
            Some(_) => Err(SinkError::Refused(reason())),
            None => Err(SinkError::Unavailable(format!(
                "HTTP {status} with a body that is not the API's JSON envelope"
            ))),
        }
    }
}

/// `{"success": bool, "errors": [{"code", "message"}], "result": ..., "result_info": ...}`
#[derive(Debug, Deserialize)]
struct Envelope {
    success: bool,
    #[serde(default)]
    errors: Vec<ApiMessage>,
    #[serde(default)]
    result: Value,
    #[serde(default)]
    result_info: Option<ResultInfo>,
}

#[derive(Debug, Deserialize)]
struct ApiMessage {
    #[serde(default)]
    code: Option<i64>,
    #[serde(default)]
    message: String,
}

#[derive(Debug, Deserialize)]
struct ResultInfo {
    #[serde(default)]
    cursor: Option<String>,
}

impl Envelope {
    fn describe_errors(&self) -> String {
        self.errors
            .iter()
            .map(|error| match error.code {
                Some(code) => format!("{} (code {code})", error.message),
                None => error.message.clone(),
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// A bulk result: `{"successful_key_count": n, "unsuccessful_keys": [...]}`.
    fn written(self) -> Written {
        #[derive(Deserialize, Default)]
        struct Bulk {
            #[serde(default)]
            unsuccessful_keys: Vec<String>,
        }
        let bulk: Bulk = serde_json::from_value(self.result).unwrap_or_default();
        Written {
            unsuccessful: bulk.unsuccessful_keys,
        }
    }
}

impl KvSink for CloudflareKv {
    fn describe(&self) -> String {
        let path = self
            .namespace_url
            .split("/accounts/")
            .nth(1)
            .unwrap_or_default();
        format!("cloudflare:{path}")
    }

    async fn put(&self, entries: &[KvEntry]) -> Result<Written, SinkError> {
        Ok(self
            .call(Method::PUT, "/bulk", Some(bulk_body(entries)))
            .await?
            .written())
    }

    async fn get(&self, names: &[String]) -> Result<HashMap<String, Option<String>>, SinkError> {
        // `{"keys": [...]}` reads text values: `{"values": {"<name>": "<value>" | null}}`.
        let envelope = self
            .call(Method::POST, "/bulk/get", Some(json!({ "keys": names })))
            .await?;
        #[derive(Deserialize)]
        struct Values {
            values: HashMap<String, Option<String>>,
        }
        let read: Values = serde_json::from_value(envelope.result)
            .map_err(|error| SinkError::Unavailable(format!("unexpected bulk read: {error}")))?;
        Ok(read.values)
    }

    async fn delete(&self, names: &[String]) -> Result<Written, SinkError> {
        Ok(self
            .call(Method::DELETE, "/bulk", Some(json!(names)))
            .await?
            .written())
    }

    async fn list(&self, cursor: Option<&str>) -> Result<KvPage, SinkError> {
        let mut path = format!("/keys?limit={LIST_PAGE}");
        if let Some(cursor) = cursor {
            path.push_str("&cursor=");
            path.push_str(&percent_encode(cursor));
        }
        let envelope = self.call(Method::GET, &path, None).await?;
        #[derive(Deserialize)]
        struct Key {
            name: String,
            #[serde(default)]
            metadata: Option<Value>,
        }
        let keys: Vec<Key> = serde_json::from_value(envelope.result)
            .map_err(|error| SinkError::Unavailable(format!("unexpected key listing: {error}")))?;
        Ok(KvPage {
            entries: keys
                .into_iter()
                .map(|key| Listed {
                    version: version_in(key.metadata),
                    name: key.name,
                })
                .collect(),
            cursor: envelope
                .result_info
                .and_then(|info| info.cursor)
                .filter(|cursor| !cursor.is_empty()),
        })
    }
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|byte| {
            if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
                char::from(byte).to_string()
            } else {
                format!("%{byte:02X}")
            }
        })
        .collect()
}
