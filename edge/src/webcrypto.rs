//! WebCrypto (`crypto.subtle`), for the two Ed25519 keys the edge holds: the assertion key it
//! signs with and the record keys it verifies with. No signature code is compiled into the wasm.

use wasm_bindgen::{JsCast, JsValue};
use worker::wasm_bindgen_futures::JsFuture;
use worker::{Error, Result, js_sys, web_sys};

pub(crate) const ED25519: &str = "Ed25519";

pub(crate) fn subtle() -> Result<web_sys::SubtleCrypto> {
    let scope: web_sys::WorkerGlobalScope = js_sys::global().unchecked_into();
    Ok(scope.crypto()?.subtle())
}

/// Imports an Ed25519 JWK (`jwk_json`) for `usage` (`sign` or `verify`), not extractable.
pub(crate) async fn import_ed25519(jwk_json: &str, usage: &str) -> Result<web_sys::CryptoKey> {
    let jwk = js_sys::JSON::parse(jwk_json)?;
    let usages = js_sys::Array::of1(&JsValue::from_str(usage));
    let imported = JsFuture::from(subtle()?.import_key_with_str(
        "jwk",
        jwk.unchecked_ref(),
        ED25519,
        false,
        &usages,
    )?)
    .await?;
    imported
        .dyn_into()
        .map_err(|_| Error::RustError("importKey gave no CryptoKey".into()))
}
