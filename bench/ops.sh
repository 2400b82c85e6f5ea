#!/usr/bin/env bash
# What operations cost per request: the proxy alone, the keep-alive POST workload of
# bench/run.sh (TLS 1.3, a token, 1 KiB ndjson, wrk -t1 -c32), under four configurations
# alternated round by round in one run:
#   bare      admin listener off (so no metrics are recorded), access log off, usage off
#   usage     bare + usage per credential (counters, the body's lines counted, saved every 5 s)
#   metrics   admin listener on (Prometheus counters and histograms per request)
#   text      metrics + access log, text format
#   ecs       metrics + access log, ECS JSON
# The proxy is pinned to CPU 0 and its CPU per request is CPU 0's busy time (as in run.sh);
# the load generator and stand-in upstream run on CPU 1. Logs go to /dev/null.
#   bench/ops.sh            3 rounds × 10 s
#   bench/ops.sh --quick    1 round × 4 s
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=3 SECS=10
if [ "${1:-}" = "--quick" ]; then ROUNDS=1 SECS=4; fi
source bench/prelude.sh
bench_prereqs
cargo build --release --locked --bin apm-auth-proxy --example bench_upstream >&2
taskset -cp 1 $$ >/dev/null

source bench/common.sh
TOKEN=bench-$(openssl rand -hex 16)
bench_cert
UP=127.0.0.1:18211 PORT=18453 ADMIN=18454
taskset -c 1 target/release/examples/bench_upstream "$UP" & PIDS+=($!)

config() { # name → proxy.toml
  local admin=false access=false format=text usage=false
  case $1 in usage) usage=true ;; metrics) admin=true ;; text) admin=true access=true ;; ecs) admin=true access=true format=json ;; esac
  cat <<EOT
[server]
listen = "127.0.0.1:$PORT"
threads = 1
[ssl]
certificate = "$W/cert.pem"
key = "$W/key.pem"
supported_protocols = ["TLSv1.3"]
[auth]
secret_token = "$TOKEN"
[auth.failed_attempts]
enabled = false
[upstream]
url = "http://$UP"
[admin]
enabled = $admin
listen = "127.0.0.1:$ADMIN"
[log]
level = "info"
format = "$format"
access_log = $access
[usage]
enabled = $usage
file = "$W/usage.json"
EOT
}

declare -A US
for round in $(seq "$ROUNDS"); do
  for name in bare usage metrics text ecs; do
    config "$name" > "$W/$name.toml"
    BENCH_AUTH="Bearer $TOKEN" measure "$name" target/release/apm-auth-proxy "$W/$name.toml" \
      "https://127.0.0.1:$PORT/intake/v2/events" bench/post.lua
  done
done
echo "# bench/ops.sh: $ROUNDS round(s) × ${SECS}s, wrk -t1 -c32 keep-alive 1 KiB POSTs, TLS 1.3; $(awk -F: '/model name/{print $2; exit}' /proc/cpuinfo | sed 's/^ //')"
ratios configuration bare bare usage metrics text ecs
