#!/usr/bin/env bash
# Instructions per request, counted by callgrind: apm-auth-proxy against nginx, for a refused
# request (401) and a forwarded keep-alive POST (1 KiB of events, 202), both over TLS 1.3 with
# 8 kept-alive connections; and per streamed event: 100 agents of the fleet workload
# (examples/fleet_load), each streaming a 1 KB event every 100 ms, counted over 5 s of their
# streams (the stand-in's count of arrived events before and after). A count, not a time: it does not move with the machine's noise,
# which on a shared VM exceeds most single changes (bench/RESULTS.md), so it is how each
# change to the hot path is measured before the timed `bench/run.sh` confirms it. Caveats:
# the kernel's work is not counted (about half of a request's CPU), `rep movsb` copies count
# one instruction per byte, and the handful of TLS handshakes at the start are included.
#
#   bash bench/instructions.sh            # both peers, both requests
#   PEERS=apm-auth-proxy bash bench/instructions.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/prelude.sh # bench_prereqs, bench_cert, nginx_conf
bench_prereqs
missing=()
command -v valgrind >/dev/null || missing+=(valgrind)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
if [ "${#missing[@]}" -gt 0 ]; then
  as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
cargo build --release --locked --bin apm-auth-proxy --example bench_upstream --example fleet_load >&2
source bench/common.sh
bench_cert
TOKEN=bench-$(openssl rand -hex 16)
UP_PORT=$(free_port)
PORT=$(free_port)
SECS=${SECS:-6}

taskset -c 1 target/release/examples/bench_upstream "127.0.0.1:$UP_PORT" >/dev/null 2>&1 &
PIDS+=($!)

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
[auth.failed_attempts]
enabled = false
[upstream]
url = "http://127.0.0.1:$UP_PORT"
[admin]
enabled = false
[log]
level = "warn"
access_log = false
EOT

nginx_conf "$PORT" "127.0.0.1:$UP_PORT" "$TOKEN" "master_process off;"

# start_peer PEER: the peer under callgrind, instrumentation off, once it listens; sets $pid.
start_peer() {
  local cmd=(target/release/apm-auth-proxy run --config "$W/proxy.toml")
  [ "$1" = nginx ] && cmd=("$NGINX" -c "$W/nginx.conf" -e "$W/nginx/error.log")
  rm -f "$W"/cg.out*
  taskset -c 0 valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$W/cg.out" \
    "${cmd[@]}" 2>"$W/valgrind.log" &
  pid=$!
  for _ in $(seq 300); do (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.1; done
}

# stop_peer N: the instructions counted since instrumentation was turned on, divided by N.
stop_peer() {
  local total
  callgrind_control -d "$pid" >/dev/null
  # The counts are dumped: stopped at once (nginx under valgrind may ignore SIGTERM).
  kill -KILL "$pid"; wait "$pid" 2>/dev/null || true
  total=$(for f in "$W"/cg.out*; do callgrind_annotate "$f" 2>/dev/null | awk '/PROGRAM TOTALS/{gsub(",","",$1); print $1}'; done | awk '{s+=$1} END {print s}')
  awk -v t="$total" -v n="$1" 'BEGIN { printf "%.0f", t / n }'
}

# count PEER AUTH: the peer's instructions per request for wrk's POSTs with AUTH.
count() {
  local peer=$1 auth=$2 out
  start_peer "$peer"
  local url="https://127.0.0.1:$PORT/intake/v2/events"
  BENCH_AUTH=$auth taskset -c 1 wrk -t1 -c8 -d2s -s bench/post.lua "$url" >/dev/null
  callgrind_control -i on "$pid" >/dev/null
  out=$(BENCH_AUTH=$auth taskset -c 1 wrk -t1 -c8 -d"${SECS}s" -s bench/post.lua "$url")
  callgrind_control -i off "$pid" >/dev/null
  stop_peer "$(awk '/requests in/{print $1}' <<<"$out")"
}

# arrived: the events the stand-in has received from the fleet workload so far.
arrived() {
  curl -s "http://127.0.0.1:$UP_PORT/fleet/stats" | sed -n 's/^arrived=\([0-9]*\).*/\1/p'
}

# count_events PEER: the peer's instructions per streamed event, 100 agents streaming.
count_events() {
  local before after fleet
  start_peer "$1"
  curl -s "http://127.0.0.1:$UP_PORT/fleet/reset" >/dev/null
  taskset -c 1 target/release/examples/fleet_load "127.0.0.1:$PORT" 100 14 "$TOKEN" "127.0.0.1:$UP_PORT" >/dev/null &
  fleet=$!
  sleep 5 # connected and streaming
  before=$(arrived)
  callgrind_control -i on "$pid" >/dev/null
  sleep 5
  callgrind_control -i off "$pid" >/dev/null
  after=$(arrived)
  wait "$fleet" || true
  stop_peer $((after - before))
}

read -r -a peers <<<"${PEERS:-apm-auth-proxy nginx}"
declare -A IR
for peer in "${peers[@]}"; do
  IR[$peer,401]=$(count "$peer" "Bearer wrong-$TOKEN")
  IR[$peer,202]=$(count "$peer" "Bearer $TOKEN")
  IR[$peer,event]=$(count_events "$peer")
done
echo "| peer | 401: instructions/request | keep-alive POST: instructions/request | streamed event: instructions/event |"
echo "| --- | ---: | ---: | ---: |"
base=${peers[-1]}
for peer in "${peers[@]}"; do
  awk -v p="$peer" -v a="${IR[$peer,401]}" -v b="${IR[$peer,202]}" -v c="${IR[$peer,event]}" \
    -v ba="${IR[$base,401]}" -v bb="${IR[$base,202]}" -v bc="${IR[$base,event]}" -v bn="$base" \
    'BEGIN { printf "| %s | %d (%.2f× %s) | %d (%.2f× %s) | %d (%.2f× %s) |\n", p, a, a / ba, bn, b, b / bb, bn, c, c / bc, bn }'
done
