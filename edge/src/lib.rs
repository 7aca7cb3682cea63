//! keygate-edge: the Cloudflare Worker in front of an API. Gateway and verify modes arrive with the
//! edge issue; until then every request is refused (fail closed) with keygate's error format.

use keygate_shared::ErrorBody;
use worker::{Context, Env, Request, Response, Result, event};

#[event(fetch)]
async fn fetch(_request: Request, _env: Env, _ctx: Context) -> Result<Response> {
    let body = ErrorBody::new("not_configured", "keygate edge is not configured yet", "");
    Ok(Response::from_json(&body)?.with_status(503))
}
