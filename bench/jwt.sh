#!/usr/bin/env bash
# What a JWT costs per request.
# 1. In process (examples/bench_jwt.rs): `authenticate` on a Bearer secret token, on a cached
#    JWT (an agent reusing its token), and a first verification (the signature) per algorithm.
# 2. End to end, as bench/ops.sh measures: the keep-alive POST workload of bench/run.sh (TLS 1.3,
#    1 KiB ndjson, wrk -t1 -c32) with a secret token and with a JWT of an issuer whose keys are
#    a JWKS file, alternated round by round; the proxy pinned to CPU 0, its CPU per request is
#    CPU 0's busy time.
#   bench/jwt.sh            3 rounds × 10 s
#   bench/jwt.sh --quick    1 round × 4 s
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=3 SECS=10
if [ "${1:-}" = "--quick" ]; then ROUNDS=1 SECS=4; fi
source bench/prelude.sh
bench_prereqs
cargo build --release --locked --bin apm-auth-proxy --example bench_upstream --example bench_jwt >&2
taskset -cp 1 $$ >/dev/null

echo "# in process (ns per authenticate call, one core)"
taskset -c 0 target/release/examples/bench_jwt

source bench/common.sh
TOKEN=bench-$(openssl rand -hex 16)
JWT=$(target/release/examples/bench_jwt --mint "$W")
bench_cert
UP=127.0.0.1:18221 PORT=18463
taskset -c 1 target/release/examples/bench_upstream "$UP" & PIDS+=($!)
cat > "$W/proxy.toml" <<EOT
[server]
listen = "127.0.0.1:$PORT"
threads = 1
[ssl]
certificate = "$W/cert.pem"
key = "$W/key.pem"
supported_protocols = ["TLSv1.3"]
[auth]
secret_token = "$TOKEN"
[[auth.jwt]]
name = "bench"
issuer = "https://idp.example.com"
audiences = ["apm"]
jwks_file = "$W/jwks.json"
algorithms = ["ES256"]
[auth.failed_attempts]
enabled = false
[upstream]
url = "http://$UP"
[admin]
enabled = false
[log]
access_log = false
[usage]
enabled = false
EOT
declare -A US
for round in $(seq "$ROUNDS"); do
  for name in token jwt; do
    auth="Bearer $TOKEN"; [ "$name" = jwt ] && auth="Bearer $JWT"
    # 0.5 s: the issuer's keys read
    BENCH_AUTH="$auth" measure "$name" target/release/apm-auth-proxy "$W/proxy.toml" \
      "https://127.0.0.1:$PORT/intake/v2/events" bench/post.lua 0.5
  done
done
echo "# end to end: $ROUNDS round(s) × ${SECS}s, wrk -t1 -c32 keep-alive 1 KiB POSTs, TLS 1.3"
ratios credential token token jwt
