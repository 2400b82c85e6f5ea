#!/usr/bin/env bash
# What reading OTLP bodies costs (issue 25).
# 1. In process (examples/bench_otlp.rs): the proxy's field walker on a 100-span trace export
#    (protobuf and JSON) against a full decode of the same bytes by the OpenTelemetry protos'
#    own types (prost, serde).
# 2. End to end, as bench/jwt.sh measures: keep-alive OTLP/HTTP protobuf exports of that
#    batch (TLS 1.3, wrk -t1 -c32) with an API key that may send any service (the body is
#    forwarded unread) and with one bound to the batch's service (the body is read whole,
#    walked and replayed), alternated round by round; the proxy pinned to CPU 0, its CPU per
#    request is CPU 0's busy time.
#   bench/otlp.sh            3 rounds × 10 s
#   bench/otlp.sh --quick    1 round × 4 s
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=3 SECS=10
if [ "${1:-}" = "--quick" ]; then ROUNDS=1 SECS=4; fi
source bench/prelude.sh
bench_prereqs
cargo build --release --locked --bin apm-auth-proxy --example bench_upstream --example bench_otlp >&2
taskset -cp 1 $$ >/dev/null

echo "# in process (ns per 100-span trace export, one core)"
taskset -c 0 target/release/examples/bench_otlp

source bench/common.sh
target/release/examples/bench_otlp --write "$W/export.pb"
bench_cert
UP=127.0.0.1:18231 PORT=18473
taskset -c 1 target/release/examples/bench_upstream "$UP" & PIDS+=($!)
cat > "$W/proxy.toml" <<EOT
[server]
listen = "127.0.0.1:$PORT"
threads = 1
[ssl]
certificate = "$W/cert.pem"
key = "$W/key.pem"
supported_protocols = ["TLSv1.3"]
[auth.api_key]
enabled = true
keys_file = "$W/keys.toml"
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
key() {
  target/release/apm-auth-proxy --config "$W/proxy.toml" apikey create --privileges event:write \
    --json "$@" | python3 -c 'import json,sys; print(json.load(sys.stdin)["credentials"])'
}
ANY=$(key --name any)
BOUND=$(key --name bound --services checkout)
declare -A US
for round in $(seq "$ROUNDS"); do
  for name in unread read; do
    auth="ApiKey $ANY"; [ "$name" = read ] && auth="ApiKey $BOUND"
    BENCH_AUTH="$auth" BENCH_BODY="$W/export.pb" measure "$name" target/release/apm-auth-proxy \
      "$W/proxy.toml" "https://127.0.0.1:$PORT/v1/traces" bench/otlp.lua
  done
done
echo "# end to end: $ROUNDS round(s) × ${SECS}s, wrk -t1 -c32 keep-alive OTLP/HTTP protobuf exports ($(stat -c %s "$W/export.pb") bytes), TLS 1.3"
ratios body unread unread read
