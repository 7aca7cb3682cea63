//! The dashboard's static files, embedded in the binary and served at
//! `/assets/<stem>.<hash>.<ext>`: the hash is of the content, so each may be cached for a year
//! (`immutable`), and a changed file is a new URL. htmx is vendored unmodified (docs/dashboard.md
//! says where from).

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

struct Asset {
    url: String,
    content_type: &'static str,
    body: &'static [u8],
}

/// The URLs the templates link to.
#[derive(Debug)]
pub(super) struct Urls {
    pub htmx: &'static str,
    pub css: &'static str,
    pub js: &'static str,
    pub icon: &'static str,
}

static ASSETS: LazyLock<[Asset; 4]> = LazyLock::new(|| {
    [
        asset(
            "htmx-2.0.11.min",
            "js",
            include_bytes!("../../../assets/htmx-2.0.11.min.js"),
        ),
        asset(
            "keygate",
            "css",
            include_bytes!("../../../assets/keygate.css"),
        ),
        asset(
            "keygate",
            "js",
            include_bytes!("../../../assets/keygate.js"),
        ),
        asset("icon", "svg", include_bytes!("../../../assets/icon.svg")),
    ]
});

pub(super) static URLS: LazyLock<Urls> = LazyLock::new(|| Urls {
    htmx: &ASSETS[0].url,
    css: &ASSETS[1].url,
    js: &ASSETS[2].url,
    icon: &ASSETS[3].url,
});

fn asset(stem: &str, extension: &str, body: &'static [u8]) -> Asset {
    let hash = hex::encode(Sha256::digest(body));
    Asset {
        url: format!("/assets/{stem}.{}.{extension}", &hash[..12]),
        content_type: match extension {
            "css" => "text/css; charset=utf-8",
            "svg" => "image/svg+xml",
            _ => "text/javascript; charset=utf-8",
        },
        body,
    }
}

/// `GET /assets/{file}`: only the current URL of each file; anything else is 404.
pub(super) async fn serve(Path(file): Path<String>) -> Response {
    let Some(asset) = ASSETS
        .iter()
        .find(|asset| asset.url.strip_prefix("/assets/") == Some(file.as_str()))
    else {
        return StatusCode::NOT_FOUND.into_response();
    };
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(asset.content_type),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=31536000, immutable"),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        asset.body,
    )
        .into_response()
}
