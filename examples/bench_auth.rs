//! The cost of authentication itself, for `bench/run.sh`: `Authenticator::authenticate` on an
//! `ApiKey` header (base64 decode, id lookup among 1,000 keys, SHA-256, constant-time compare)
//! and on a `Bearer` token, in a tight loop on one core. Prints `apikey_ns <n>` and
//! `token_ns <n>` (nanoseconds per call, median of 5 runs).

use std::hint::black_box;
use std::time::{Instant, SystemTime};

use apm_auth_proxy::auth::keys_file::{new_key, KeysFile};
use apm_auth_proxy::auth::{AuthOutcome, Authenticator, CredentialStore};
use apm_auth_proxy::config::Config;

const CALLS: u32 = 200_000;

fn ns_per_call(auth: &Authenticator, header: &[u8]) -> f64 {
    let mut runs: Vec<f64> = (0..5)
        .map(|_| {
            let now = SystemTime::now();
            let start = Instant::now();
            for _ in 0..CALLS {
                let outcome = auth.authenticate(black_box(Some(header)), now);
                assert!(matches!(outcome, AuthOutcome::Authenticated(_)));
            }
            start.elapsed().as_nanos() as f64 / f64::from(CALLS)
        })
        .collect();
    runs.sort_by(f64::total_cmp);
    runs[2]
}

fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut file = KeysFile::default();
    let mut credential = String::new();
    for i in 0..1000 {
        let key = new_key(
            &format!("svc-{i}"),
            &["event:write".into()],
            None,
            &[],
            SystemTime::now(),
        )
        .expect("new key");
        credential = key.credential;
        file.keys.push(key.record);
    }
    file.save(&dir.path().join("keys.toml")).expect("keys file");
    let mut config = Config::parse(
        "[auth]\nsecret_token = \"bench-token-0123456789abcdef0123456789\"\n\
         [auth.api_key]\nenabled = true\nkeys_file = \"keys.toml\"\n",
    )
    .expect("config");
    config.base_dir = dir.path().to_path_buf();
    let auth = Authenticator::new(CredentialStore::load(&config).expect("credentials"));
    let apikey = format!("ApiKey {credential}");
    println!("apikey_ns {:.0}", ns_per_call(&auth, apikey.as_bytes()));
    println!(
        "token_ns {:.0}",
        ns_per_call(&auth, b"Bearer bench-token-0123456789abcdef0123456789")
    );
}
