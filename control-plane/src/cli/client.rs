//! The HTTP side of the CLI: one request, its JSON answer, or the API's error made readable.

use reqwest::{Method, StatusCode};
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub(crate) enum CliError {
    #[error("{status}: {code}: {message} (request {request_id})")]
    Api {
        status: StatusCode,
        code: String,
        message: String,
        request_id: String,
    },
    #[error("cannot reach {url}: {source}")]
    Unreachable { url: String, source: reqwest::Error },
    #[error("{0}")]
    Usage(String),
}

impl CliError {
    pub(crate) fn exit_code(&self) -> u8 {
        match self {
            CliError::Api { .. } => 1,
            CliError::Unreachable { .. } | CliError::Usage(_) => 2,
        }
    }
}

#[derive(Debug)]
pub(crate) struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    pub(crate) fn new(base: &str, token: Option<&str>) -> Result<Self, CliError> {
        let token = token.ok_or_else(|| {
            CliError::Usage("set KEYGATE_TOKEN (or --token) to a control-plane token".into())
        })?;
        let http = reqwest::Client::builder()
            .user_agent(concat!("keygate-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|source| CliError::Unreachable {
                url: base.to_owned(),
                source,
            })?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
        })
    }

    /// Sends the request; `Ok(None)` for a 204.
    pub(crate) async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Option<Value>, CliError> {
        let url = format!("{}{path}", self.base);
        let mut request = self
            .http
            .request(method, &url)
            .bearer_auth(&self.token)
            .query(query);
        if let Some(body) = body {
            request = request.json(body);
        }
        let unreachable = |source| CliError::Unreachable {
            url: url.clone(),
            source,
        };
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status();
        if status == StatusCode::NO_CONTENT {
            return Ok(None);
        }
        let text = response.text().await.map_err(unreachable)?;
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if status.is_success() {
            return Ok(Some(value));
        }
        let field = |name: &str| value["error"][name].as_str().unwrap_or("-").to_owned();
        Err(CliError::Api {
            status,
            code: field("code"),
            message: field("message"),
            request_id: field("request_id"),
        })
    }
}
