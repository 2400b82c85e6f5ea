#!/usr/bin/env bash
# What anonymous RUM traffic costs the proxy (issue: anonymous RUM access):
#  1. memory while 1,000 anonymous clients stream events at once (each its own client IP);
#  2. throughput and CPU per request of 1 KB RUM posts read by the metadata reader
#     (anonymous) versus forwarded untouched (secret token), alternated, on one proxy core.
# Loopback only; every process started here is stopped by PID at the end.
# Usage: bench/rum.sh [seconds per throughput round, default 10]
set -euo pipefail
cd "$(dirname "$0")/.."
SECS="${1:-10}"
bash scripts/setup.sh build
cargo build --release --locked --bin apm-auth-proxy --example bench_upstream --example rum_load >&2

STOP_SIGNAL=KILL
source bench/common.sh
UP="127.0.0.1:$(free_port)"; PORT="$(free_port)"
target/release/apm-auth-proxy token generate >/dev/null 2>&1 || true
cat > "$W/proxy.toml" <<EOT
[server]
listen = "127.0.0.1:$PORT"
threads = 1
[ssl]
certificate = "cert.pem"
key = "key.pem"
generate_dev_certificate = true
[auth]
secret_token = "bench-token"
[auth.anonymous]
max_concurrent_requests = 4
[auth.anonymous.rate_limit]
event_limit = 1000000
ip_limit = 5000
[rum]
enabled = true
[client_ip]
trusted_proxies = ["127.0.0.1"]
[upstream]
url = "http://$UP"
[log]
level = "warn"
access_log = false
EOT
ulimit -n 65536 2>/dev/null || true
taskset -c 1 target/release/examples/bench_upstream "$UP" & PIDS+=($!); disown
taskset -c 0 target/release/apm-auth-proxy run --config "$W/proxy.toml" 2>"$W/proxy.log" & PROXY=$!; PIDS+=($PROXY); disown
for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
URL="https://localhost:$PORT"
LOAD=target/release/examples/rum_load

echo "## anonymous RUM on $(date -u +%F), $(nproc) cores, $(uname -r)"
PROXY_PID=$PROXY taskset -c 1 "$LOAD" streams "$URL" 1000 10
for round in 1 2; do
  PROXY_PID=$PROXY taskset -c 1 "$LOAD" rate "$URL" "$SECS" | tee -a "$W/rates"
  PROXY_PID=$PROXY taskset -c 1 "$LOAD" rate "$URL" "$SECS" bench-token | tee -a "$W/rates"
done
python3 - "$W/rates" <<'PY'
import re, statistics, sys
anon, tok = {"rps": [], "cpu": []}, {"rps": [], "cpu": []}
for line in open(sys.argv[1]):
    m = re.search(r"([\d.]+) req/s.*CPU ([\d.]+)", line)
    if not m: continue
    d = anon if line.startswith("anonymous") else tok
    d["rps"].append(float(m.group(1))); d["cpu"].append(float(m.group(2)))
med = statistics.median
print(f"metadata reader vs plain forwarding: req/s ratio {med(anon['rps'])/med(tok['rps']):.2f}, "
      f"CPU per request ratio {med(anon['cpu'])/med(tok['cpu']):.2f}")
PY
