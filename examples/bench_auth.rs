//! The cost of the proxy's own per-request work, for `bench/run.sh`, in a tight loop on one
//! core: `Authenticator::authenticate` on an `ApiKey` header (base64 decode, id lookup among
//! 1,000 keys, SHA-256, constant-time compare) and on a `Bearer` token; the whole admission
//! decision (`Gate::decide`: path check, route, throttle, authentication, privileges) for the
//! bench's keep-alive request; the rewrite of its headers for the upstream. Prints
//! `apikey_ns`, `token_ns`, `gate_ns` and `rewrite_ns` (nanoseconds per call, median of 5 runs).

use std::hint::black_box;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use apm_auth_proxy::admission::{Caller, Decision, Gate};
use apm_auth_proxy::auth::keys_file::{new_key, KeysFile};
use apm_auth_proxy::auth::{AuthOutcome, Authenticator, CredentialStore};
use apm_auth_proxy::config::ConfigFile;
use apm_auth_proxy::forward::rewrite_upstream_headers;
use apm_auth_proxy::settings::Settings;
use pingora::http::RequestHeader;

const CALLS: u32 = 200_000;
const TOKEN: &str = "bench-token-0123456789abcdef0123456789";

/// Median over 5 runs of the nanoseconds per call of `f`.
fn ns_per_call(mut f: impl FnMut()) -> f64 {
    let mut runs: Vec<f64> = (0..5)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..CALLS {
                f();
            }
            start.elapsed().as_nanos() as f64 / f64::from(CALLS)
        })
        .collect();
    runs.sort_by(f64::total_cmp);
    runs[2]
}

fn authenticate_ns(auth: &Authenticator, header: &[u8]) -> f64 {
    let now = SystemTime::now();
    ns_per_call(|| {
        let outcome = auth.authenticate(black_box(Some(header)), now);
        assert!(matches!(outcome, AuthOutcome::Authenticated(_)));
    })
}

/// The head of the keep-alive request `bench/post.lua` sends, as Pingora parses it.
fn bench_request() -> RequestHeader {
    let mut req = RequestHeader::build("POST", b"/intake/v2/events", None).expect("request");
    for (name, value) in [
        ("Host", "127.0.0.1:18443".to_string()),
        ("Content-Length", "1009".to_string()),
        ("Content-Type", "application/x-ndjson".to_string()),
        ("Authorization", format!("Bearer {TOKEN}")),
    ] {
        req.append_header(name, value).expect("header");
    }
    req
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
            None,
            None,
            SystemTime::now(),
        )
        .expect("new key");
        credential = key.credential;
        file.keys.push(key.record);
    }
    file.save(&dir.path().join("keys.toml")).expect("keys file");
    let config_path = dir.path().join("proxy.toml");
    std::fs::write(
        &config_path,
        format!(
            "[ssl]\nenabled = false\n[auth]\nsecret_token = \"{TOKEN}\"\n\
             [auth.api_key]\nenabled = true\nkeys_file = \"keys.toml\"\n"
        ),
    )
    .expect("config file");
    let settings =
        Settings::try_from(&ConfigFile::load(&config_path).expect("config")).expect("settings");
    let auth = Authenticator::new(CredentialStore::load(&settings.auth).expect("credentials"));
    let apikey = format!("ApiKey {credential}");
    println!("apikey_ns {:.0}", authenticate_ns(&auth, apikey.as_bytes()));
    println!(
        "token_ns {:.0}",
        authenticate_ns(&auth, format!("Bearer {TOKEN}").as_bytes())
    );

    let gate = Gate::new(
        &settings.admission,
        Arc::new(auth),
        settings.identities.clone(),
    );
    let req = bench_request();
    let ip: IpAddr = "127.0.0.1".parse().expect("ip");
    let gate_ns = ns_per_call(|| {
        let caller = Caller {
            peer_cert: None,
            ip,
            now: SystemTime::now(),
            clock: Instant::now(),
        };
        let decision = gate.decide(black_box(&req), caller);
        assert!(matches!(decision, Decision::Forward(_)));
    });
    println!("gate_ns {gate_ns:.0}");
    // The rewrite works on Pingora's copy of the head; the copy itself is Pingora's cost.
    let copy_ns = ns_per_call(|| {
        black_box(req.clone());
    });
    let rewrite_ns = ns_per_call(|| {
        let mut upstream = req.clone();
        rewrite_upstream_headers(black_box(&mut upstream), ip, "https", None, false)
            .expect("rewrite");
        black_box(upstream);
    });
    println!("rewrite_ns {:.0}", rewrite_ns - copy_ns);
}
