//! The identity assertion on every forwarded request: a JWT signed with the edge's Ed25519 key
//! through WebCrypto (`crypto.subtle`, so no signature code in the wasm), over claims from
//! keygate-shared. The key is imported once per isolate; each key's token is kept per record
//! version and signed again when three quarters of its lifetime have passed, so a hot key pays
//! for one signature per isolate per `0.75 x lifetime`, not one per request.

use std::cell::RefCell;
use std::collections::HashMap;

use keygate_shared::{AssertionClaims, Identity, KeyId, compact, signing_input};
use worker::wasm_bindgen_futures::JsFuture;
use worker::{Result, js_sys, web_sys};

use crate::config::AssertionConfig;
use crate::webcrypto::{ED25519, import_ed25519, subtle};

/// A key's current token, for the record version it was signed from.
#[derive(Debug)]
struct Signed {
    version: u64,
    token: js_sys::JsString,
    refresh_at_ms: i64,
}

/// One isolate's signer: the imported key and each key's current token.
#[derive(Debug)]
pub(crate) struct Signer {
    key: RefCell<Option<web_sys::CryptoKey>>,
    tokens: RefCell<HashMap<KeyId, Signed>>,
    capacity: usize,
}

impl Signer {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            key: RefCell::new(None),
            tokens: RefCell::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }

    /// The assertion for an allowed key, from the cache or freshly signed.
    pub(crate) async fn token(
        &self,
        config: &AssertionConfig,
        identity: &Identity<'_>,
        version: u64,
        now_ms: i64,
    ) -> Result<js_sys::JsString> {
        if let Some(signed) = self.tokens.borrow().get(&identity.key_id)
            && signed.version == version
            && now_ms < signed.refresh_at_ms
        {
            return Ok(signed.token.clone());
        }
        let now = now_ms.div_euclid(1000);
        let claims = AssertionClaims::for_identity(
            identity,
            &config.issuer,
            &config.audience,
            now,
            config.lifetime_seconds,
        );
        let input = signing_input(&config.jwk.kid, &claims);
        let key = self.key(config).await?;
        let signature = JsFuture::from(subtle()?.sign_with_str_and_u8_array(
            ED25519,
            &key,
            input.as_bytes(),
        )?)
        .await?;
        let token: js_sys::JsString =
            compact(&input, &js_sys::Uint8Array::new(&signature).to_vec())
                .as_str()
                .into();
        let mut tokens = self.tokens.borrow_mut();
        if tokens.len() >= self.capacity && !tokens.contains_key(&identity.key_id) {
            tokens.clear();
        }
        tokens.insert(
            identity.key_id,
            Signed {
                version,
                token: token.clone(),
                refresh_at_ms: (now + config.lifetime_seconds * 3 / 4) * 1000,
            },
        );
        Ok(token)
    }

    /// The signing key, imported from its JWK on first use.
    async fn key(&self, config: &AssertionConfig) -> Result<web_sys::CryptoKey> {
        if let Some(key) = self.key.borrow().as_ref() {
            return Ok(key.clone());
        }
        let key = import_ed25519(&config.jwk_json, "sign").await?;
        *self.key.borrow_mut() = Some(key.clone());
        Ok(key)
    }
}
