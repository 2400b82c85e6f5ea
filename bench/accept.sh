#!/usr/bin/env bash
# The accept path at fleet scale: 10,000 TLS connections opened against the proxy (100
# handshakes at a time, all held open), with the connection caps on (every connection admitted
# and counted by its owner, vendored change 5) and off, and the proxy's CPU per accepted
# connection (user + system time, /proc) for each. Run on demand, never by the test suite.
#   bench/accept.sh [CONNECTIONS]
set -euo pipefail
cd "$(dirname "$0")/.."
CONNS=${1:-10000}
scripts/setup.sh build
cargo build --release --locked --bin apm-auth-proxy --example bench_upstream >&2
if [ "$(ulimit -n)" -lt $((CONNS + 100)) ]; then
  ulimit -n $((CONNS + 100)) 2>/dev/null || { echo "bench: the open-file limit $(ulimit -n) is too low for $CONNS connections" >&2; exit 1; }
fi
source bench/common.sh
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$W/key.pem" \
  -out "$W/cert.pem" -days 2 -subj /CN=localhost -addext subjectAltName=DNS:localhost 2>/dev/null
UP=127.0.0.1:$(free_port)
target/release/examples/bench_upstream "$UP" & PIDS+=($!)
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
run() { # caps (a [server] fragment) → one result line
  local port; port=$(free_port)
  cat > "$W/proxy.toml" <<EOT
[server]
listen = "127.0.0.1:$port"
threads = 1
$1
[ssl]
certificate = "$W/cert.pem"
key = "$W/key.pem"
[auth]
secret_token = "bench-$(openssl rand -hex 16)"
[upstream]
url = "http://$UP"
[admin]
enabled = false
[log]
level = "warn"
access_log = false
EOT
  target/release/apm-auth-proxy run --config "$W/proxy.toml" 2>>"$W/proxy.log" &
  local pid=$!
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.05; done
  local before after out
  before=$(ticks "$pid")
  out=$(python3 bench/accept_conns.py "$port" "$CONNS" 100)
  after=$(ticks "$pid")
  kill -KILL "$pid"; wait "$pid" 2>/dev/null || true
  local opened; opened=$(sed -n 's/.*opened=\([0-9]*\).*/\1/p' <<<"$out")
  echo "$out cpu_us_per_conn=$(awk -v t=$((after - before)) -v hz="$hz" -v n="$opened" 'BEGIN{printf "%.0f", t * 1e6 / hz / n}')"
}
echo "accept: $CONNS TLS connections, 100 handshakes at a time, all held open; $(nproc) CPUs"
capped=$(run "max_connections = $((CONNS + 100))
max_connections_per_ip = $((CONNS + 100))")
echo "caps on:  $capped"
uncapped=$(run "")
echo "caps off: $uncapped"
awk -v a="$capped" -v b="$uncapped" 'BEGIN{
  split(a, x, "cpu_us_per_conn="); split(b, y, "cpu_us_per_conn=");
  if (y[2] > 0) printf "caps on / off, CPU per connection: %.2fx\n", x[2] / y[2] }'
