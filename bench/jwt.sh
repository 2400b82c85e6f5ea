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
[ "$(nproc)" -ge 2 ] || { echo "bench: needs 2 CPUs" >&2; exit 1; }
scripts/setup.sh build
missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v openssl >/dev/null || missing+=(openssl)
command -v taskset >/dev/null || missing+=(util-linux)
if [ "${#missing[@]}" -gt 0 ]; then
  as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
cargo build --release --locked --bin apm-auth-proxy --example bench_upstream --example bench_jwt >&2
taskset -cp 1 $$ >/dev/null

echo "# in process (ns per authenticate call, one core)"
taskset -c 0 target/release/examples/bench_jwt

source bench/common.sh
TOKEN=bench-$(openssl rand -hex 16)
JWT=$(target/release/examples/bench_jwt --mint "$W")
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$W/key.pem" \
  -out "$W/cert.pem" -days 2 -subj /CN=localhost -addext subjectAltName=DNS:localhost 2>/dev/null
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
cpu_ticks() { awk '$1=="cpu0"{print $2 + $3 + $4 + $7 + $8}' /proc/stat; }
HZ=$(getconf CLK_TCK)
declare -A US
for round in $(seq "$ROUNDS"); do
  for name in token jwt; do
    auth="Bearer $TOKEN"; [ "$name" = jwt ] && auth="Bearer $JWT"
    taskset -c 0 target/release/apm-auth-proxy run --config "$W/proxy.toml" 2>/dev/null & pid=$!
    for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.1; done
    sleep 0.5 # the issuer's keys read
    before=$(cpu_ticks)
    out=$(BENCH_AUTH="$auth" taskset -c 1 wrk -t1 -c32 -d"${SECS}s" -s bench/post.lua "https://127.0.0.1:$PORT/intake/v2/events")
    after=$(cpu_ticks)
    reqs=$(awk '/requests in/{print $1}' <<<"$out")
    non2xx=$(awk '/Non-2xx/{print $5}' <<<"$out")
    [ -z "$non2xx" ] || echo "# $name: $non2xx non-2xx responses" >&2
    us=$(awk -v t=$((after - before)) -v hz="$HZ" -v n="$reqs" 'BEGIN { printf "%.2f", t / hz * 1e6 / n }')
    US[$name]="${US[$name]:-} $us"
    kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
  done
done
median() { tr ' ' '\n' <<<"$1" | grep . | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "# end to end: $ROUNDS round(s) × ${SECS}s, wrk -t1 -c32 keep-alive 1 KiB POSTs, TLS 1.3"
echo "| credential | proxy CPU µs/request (median) | vs token | runs |"
echo "| --- | --- | --- | --- |"
base=$(median "${US[token]}")
for name in token jwt; do
  m=$(median "${US[$name]}")
  awk -v n="$name" -v m="$m" -v b="$base" -v r="${US[$name]}" 'BEGIN { printf "| %s | %.2f | %.3f× (%+.2f µs) |%s |\n", n, m, m / b, m - b, r }'
done
