//! The change feed's writer: the pusher appends every record it is about to write to KV to the
//! edge's feed first (`POST <KEYGATE_FEED_URL>`, bearer `KEYGATE_FEED_TOKEN`), so isolates learn of
//! a revocation within seconds instead of after KV's propagation. The same signed records go to
//! both: a feed entry can never do more than a KV entry.

use std::fmt;
use std::time::Duration;

use keygate_shared::{Append, Appended, MAX_FEED_ENTRIES};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, RETRY_AFTER};

use super::sink::SinkError;

/// The token the edge's feed route takes. Never printed.
#[derive(Clone)]
pub struct FeedToken(String);

impl FeedToken {
    pub fn new(token: String) -> Self {
        Self(token)
    }
}

impl fmt::Debug for FeedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FeedToken(<redacted>)")
    }
}

#[derive(Clone, Debug)]
pub struct FeedWriter {
    http: reqwest::Client,
    url: String,
    token: FeedToken,
}

impl FeedWriter {
    pub fn new(url: &str, token: FeedToken, timeout: Duration) -> Result<Self, String> {
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(format!("the feed URL {url:?} is not http(s)"));
        }
        if token.0.len() < 32 {
            return Err("the feed token must be at least 32 characters".into());
        }
        let http = super::http_client(timeout)?;
        Ok(Self {
            http,
            url: url.to_owned(),
            token,
        })
    }

    /// Where it appends, for logs and the sync status.
    pub fn describe(&self) -> &str {
        &self.url
    }

    /// Appends `entries` (in requests of at most [`MAX_FEED_ENTRIES`]), in order.
    pub async fn append(&self, entries: &[Appended]) -> Result<(), SinkError> {
        for chunk in entries.chunks(MAX_FEED_ENTRIES) {
            let append = Append {
                entries: chunk.to_vec(),
            };
            let body = serde_json::to_vec(&append)
                .map_err(|error| SinkError::Refused(format!("feed append: {error}")))?;
            let response = self
                .http
                .post(&self.url)
                .bearer_auth(&self.token.0)
                .header(CONTENT_TYPE, "application/json")
                .body(body)
                .send()
                .await
                .map_err(|error| {
                    SinkError::Unavailable(format!("feed: {}", error.without_url()))
                })?;
            let status = response.status();
            if status.is_success() {
                continue;
            }
            let retry_after = response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|value| value.to_str().ok()?.trim().parse().ok())
                .map(Duration::from_secs);
            return Err(match status {
                StatusCode::TOO_MANY_REQUESTS => SinkError::Throttled { retry_after },
                status if status.is_server_error() => {
                    SinkError::Unavailable(format!("feed: HTTP {status}"))
                }
                status => SinkError::Refused(format!("feed: HTTP {status}")),
            });
        }
        Ok(())
    }
}
