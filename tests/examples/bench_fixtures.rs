//! Keys and KV records for `scripts/bench-edge`, made by keygate-shared itself: a hot production
//! key, a rate-limited one (a limit it never reaches), a mistyped one, a staging one, the records (`{key id: encoded record}`) behind them, and
//! the private JWK the Worker signs identity assertions with, and the public keys its records are
//! signed with (and the same records unsigned, for the Worker before signing).

use keygate_e2e::active_record;
use keygate_shared::{Environment, KeyFormat, RateLimit, RecordState};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use serde_json::json;

fn main() {
    let format = KeyFormat::new("kg").expect("prefix");
    let mut rng = ChaCha20Rng::seed_from_u64(2026);
    let hot = format.generate(Environment::Production, &mut rng);
    let staging = format.generate(Environment::Staging, &mut rng);
    let record = active_record(&hot, &["customer:read"], "usr_bench");
    let limited = format.generate(Environment::Production, &mut rng);
    let mut limited_record = active_record(&limited, &["customer:read"], "usr_bench");
    if let RecordState::Present(body) = &mut limited_record.state {
        body.rate_limit = Some(RateLimit::new(1_000_000, 86_400).expect("limit"));
    }
    let text = hot.expose_secret();
    let typo = format!("{}000000", &text[..text.len() - 6]);
    let fixtures = json!({
        "hot": text,
        "junk": typo,
        "wrong_environment": staging.expose_secret(),
        "limited": limited.expose_secret(),
        "records": {
            hot.key_id().as_str(): keygate_e2e::seal(&record),
            limited.key_id().as_str(): keygate_e2e::seal(&limited_record),
        },
        // For the Worker before signed records, which reads format 1.
        "unsigned_records": { hot.key_id().as_str(): record.encode() },
        "assertion_key": serde_json::to_string(&keygate_e2e::assertion_key()).expect("JSON"),
        "record_keys": keygate_e2e::record_keys(),
    });
    println!("{fixtures}");
}
