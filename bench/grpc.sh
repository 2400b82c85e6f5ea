#!/usr/bin/env bash
# What OTLP/gRPC costs through the proxy (issue: OTLP over gRPC): unary trace `Export` calls
# (1 KB messages, 8 HTTP/2 connections × 8 calls in flight) straight to the stand-in over
# h2c, and through the proxy (TLS + h2 from the client, h2c to the same stand-in),
# alternated, two rounds each. The proxy has one core (CPU 0); the stand-in and the load
# generator share the other.
# Loopback only; every process started here is stopped by PID at the end.
# Usage: bench/grpc.sh [seconds per round, default 10]
set -euo pipefail
cd "$(dirname "$0")/.."
SECS="${1:-10}"
bash scripts/setup.sh build
cargo build --release --locked --bin apm-auth-proxy --example bench_upstream --example grpc_load >&2

STOP_SIGNAL=KILL
source bench/common.sh
UP="127.0.0.1:$(free_port)"; PORT="$(free_port)"
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
[upstream]
url = "http://$UP"
[log]
level = "warn"
access_log = false
EOT
taskset -c 1 target/release/examples/bench_upstream "$UP" & UPSTREAM=$!; PIDS+=($UPSTREAM); disown
taskset -c 0 target/release/apm-auth-proxy run --config "$W/proxy.toml" 2>"$W/proxy.log" & PROXY=$!; PIDS+=($PROXY); disown
for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
LOAD=target/release/examples/grpc_load

echo "## OTLP/gRPC on $(date -u +%F), $(nproc) cores, $(uname -r)"
for round in 1 2; do
  echo "direct: $(PIDS="$UPSTREAM" taskset -c 1 "$LOAD" "http://$UP" "$SECS")" | tee -a "$W/rates"
  via_proxy=$(PIDS="$PROXY" taskset -c 1 "$LOAD" "https://localhost:$PORT" "$SECS" "Bearer bench-token")
  echo "proxy: $via_proxy" | tee -a "$W/rates"
done
python3 - "$W/rates" <<'PY'
import re, statistics, sys
direct, proxy = {"rps": [], "cpu": []}, {"rps": [], "cpu": []}
for line in open(sys.argv[1]):
    m = re.search(r"([\d.]+) calls/s, (\d+) ok, (\d+) other, CPU ([\d.]+)", line)
    if not m: continue
    if int(m.group(3)) and not int(m.group(2)): sys.exit(f"every call failed: {line}")
    d = direct if line.startswith("direct") else proxy
    d["rps"].append(float(m.group(1))); d["cpu"].append(float(m.group(4)))
med = statistics.median
print()
print("| path | calls/s | CPU µs/call (measured process) |")
print("| --- | ---: | ---: |")
print(f"| straight to the stand-in (h2c) | {med(direct['rps']):.0f} | {med(direct['cpu']):.1f} (stand-in) |")
print(f"| through the proxy (TLS h2 → h2c) | {med(proxy['rps']):.0f} | {med(proxy['cpu']):.1f} (proxy) |")
print()
print(f"calls/s through the proxy / straight: {med(proxy['rps'])/med(direct['rps']):.2f}; "
      f"proxy CPU per call / stand-in CPU per call: {med(proxy['cpu'])/med(direct['cpu']):.2f}")
PY
