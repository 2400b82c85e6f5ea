#!/usr/bin/env bash
# Side-by-side benchmark of apm-auth-proxy, nginx and HAProxy doing the same job on this
# machine, over loopback only: TLS 1.3 termination with one ECDSA P-256 certificate, a bearer
# token check, 401 JSON on failure, Authorization removed, keep-alive to the upstream,
# request buffering off, access logs off. Each proxy is pinned to CPU 0 with one worker; the
# load generator and the stand-in upstream share CPU 1. Peers alternate round by round and
# medians are reported, with each proxy's own CPU time per unit of work (CPU 0's busy time:
# the proxy's process time and the softirq work of its sends, as nothing else runs there),
# which stays meaningful when the load generator is the bottleneck.
# Then 5,000 keep-alive TLS connections are opened (one request each) and held idle while
# each peer's RSS is read (bench/idle_conns.py). Last, the agent fleet (examples/fleet_load):
# N agents (2,000; 500 in quick mode), each on its own TLS connection with one long chunked
# POST, the metadata line then a 1 KB event every 100 ms for 20 s (8 s quick): the peer's CPU
# per event, its RSS per connected agent (peak), the p99 time from an event sent to its
# arrival at the stand-in, and the events lost (sent − arrived).
#
#   bench/run.sh            full mode (3 rounds × 10 s per measurement, 1 GiB upload; ~7 min)
#   bench/run.sh --quick    1 round × 4 s, 256 MiB upload (~2 min)
#   PEERS="apm-auth-proxy" bench/run.sh --quick    only the named peers (optimisation loops)
#
# Every process it starts is stopped by PID at the end. Output: a Markdown table on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=3 SECS=10 UPLOAD_MIB=1024 IDLE_CONNS=5000 FLEET_AGENTS=2000 FLEET_SECS=20
if [ "${1:-}" = "--quick" ]; then ROUNDS=1 SECS=4 UPLOAD_MIB=256 FLEET_AGENTS=500 FLEET_SECS=8; fi
[ "$(nproc)" -ge 2 ] || { echo "bench: needs 2 CPUs" >&2; exit 1; }
# 5,000 idle connections need ~5,000 descriptors in the client and in each peer.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((2 * IDLE_CONNS + 1000)) ]; then
  echo "bench: open-file limit $(ulimit -n) is too low for $IDLE_CONNS idle connections; skipping that run" >&2
  IDLE_CONNS=0
fi

# --- tools -------------------------------------------------------------------------------
scripts/setup.sh build
missing=()
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || missing+=(haproxy)
command -v wrk >/dev/null || missing+=(wrk)
command -v openssl >/dev/null || missing+=(openssl)
command -v curl >/dev/null || missing+=(curl)
command -v ss >/dev/null || [ -x /usr/sbin/ss ] || missing+=(iproute2)
command -v taskset >/dev/null || missing+=(util-linux)
if [ "${#missing[@]}" -gt 0 ]; then
  as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
HAPROXY=$(command -v haproxy || echo /usr/sbin/haproxy)
cargo build --release --locked --bin apm-auth-proxy --example bench_upstream --example bench_auth \
  --example fleet_load >&2
# From here on everything this script starts runs on CPU 1 unless pinned to CPU 0 on purpose
# (the peers), so nothing else adds to CPU 0's busy time.
taskset -cp 1 $$ >/dev/null

source bench/common.sh
source bench/prelude.sh # cpu_ticks, HZ, bench_cert, nginx_conf

TOKEN=bench-$(openssl rand -hex 16)
bench_cert
cat "$W/cert.pem" "$W/key.pem" > "$W/combined.pem"

UP=127.0.0.1:18201
declare -A PORT=([apm-auth-proxy]=18443 [nginx]=18444 [haproxy]=18445)

# --- the peers ---------------------------------------------------------------------------
cat > "$W/proxy.toml" <<EOT
[server]
listen = "127.0.0.1:${PORT[apm-auth-proxy]}"
threads = 1
[ssl]
certificate = "$W/cert.pem"
key = "$W/key.pem"
supported_protocols = ["TLSv1.3"]
[auth]
secret_token = "$TOKEN"
[auth.api_key]
enabled = true
keys_file = "$W/keys.toml"
# The 401 run is a brute force by design; the peers have no such throttle either.
[auth.failed_attempts]
enabled = false
[upstream]
url = "http://$UP"
# Metrics and access logs off, like the peers (their cost: bench/ops.sh).
[admin]
enabled = false
[log]
level = "warn"
access_log = false
EOT

# An API key for the proxy's extra keep-alive run (its auth cost versus the token's).
APIKEY=$(target/release/apm-auth-proxy --config "$W/proxy.toml" apikey create --name bench \
  --privileges event:write --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["credentials"])')

nginx_conf "${PORT[nginx]}" "$UP" "$TOKEN" "worker_cpu_affinity 01;"

cat > "$W/haproxy.cfg" <<EOT
global
  nbthread 1
  cpu-map 1/1 0
  maxconn 8000
  ssl-default-bind-options ssl-min-ver TLSv1.3
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  http-reuse always
frontend apm
  bind 127.0.0.1:${PORT[haproxy]} ssl crt $W/combined.pem
  http-request return status 401 content-type application/json string '{"error":"authentication failed"}' hdr X-Content-Type-Options nosniff unless { req.hdr(authorization) -m str "Bearer $TOKEN" }
  http-request del-header authorization
  default_backend apm
backend apm
  server apm $UP
EOT

wait_port() {
  for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && break; sleep 0.1; done
  if ! (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null; then
    echo "bench: nothing listens on $1; logs:" >&2
    cat "$W/proxy.log" "$W/nginx.err" "$W/nginx/error.log" >&2 2>/dev/null || true
    exit 1
  fi
}
start_peer() { # peer → started on CPU 0, listening
  case $1 in
    apm-auth-proxy) taskset -c 0 target/release/apm-auth-proxy run --config "$W/proxy.toml" 2>>"$W/proxy.log" & PIDS+=($!) ;;
    nginx) taskset -c 0 "$NGINX" -c "$W/nginx.conf" -e "$W/nginx/error.log" 2>>"$W/nginx.err" & PIDS+=($!) ;;
    haproxy) taskset -c 0 "$HAPROXY" -f "$W/haproxy.cfg" -q & PIDS+=($!) ;;
  esac
  wait_port "${PORT[$1]}"
}
stop_peer() { # peer → stopped, its port free
  local p
  for p in $(pids_of "${PORT[$1]}"); do kill "$p" 2>/dev/null || true; done
  for _ in $(seq 100); do [ -z "$(pids_of "${PORT[$1]}")" ] && break; sleep 0.1; done
}
pids_of() { # every process holding the peer's listening socket (nginx: master and worker)
  ss -Hltnp "sport = :$1" | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u
}

taskset -c 1 target/release/examples/bench_upstream "$UP" & PIDS+=($!)
wait_port 18201
for peer in apm-auth-proxy nginx haproxy; do start_peer "$peer"; done

rss_kib() { local t=0; for p in $1; do t=$((t + $(awk '/VmRSS/{print $2}' /proc/"$p"/status 2>/dev/null || echo 0))); done; echo $t; }
to_ms() { awk -v v="$1" 'BEGIN { if (v ~ /us$/) print v/1000; else if (v ~ /ms$/) print v+0; else if (v ~ /s$/) print v*1000; else print v }'; }

OUT="$W/samples.csv"
: > "$OUT"
run_wrk() { # peer auth close → "rps p50 p99 requests cpu_ticks non2xx"
  local peer=$1 before after out
  before=$(cpu_ticks)
  out=$(BENCH_AUTH="$2" BENCH_CLOSE="$3" taskset -c 1 wrk -t1 -c32 -d"${SECS}s" --latency -s bench/post.lua "https://127.0.0.1:${PORT[$peer]}/intake/v2/events")
  after=$(cpu_ticks)
  local rps p50 p99 reqs non2xx
  rps=$(awk '/Requests\/sec/{print $2}' <<<"$out")
  p50=$(to_ms "$(awk '$1=="50%"{print $2}' <<<"$out")")
  p99=$(to_ms "$(awk '$1=="99%"{print $2}' <<<"$out")")
  reqs=$(awk '/requests in/{print $1}' <<<"$out")
  non2xx=$(awk '/Non-2xx/{print $5}' <<<"$out"); non2xx=${non2xx:-0}
  echo "$rps $p50 $p99 $reqs $((after - before)) $non2xx"
}

idle_conns() { # peer pids → RSS with $IDLE_CONNS idle connections open
  local peer=$1 pids=$2 rss0 rss1 ready=
  rm -f "$W/idle.in" "$W/idle.out"; mkfifo "$W/idle.in"
  rss0=$(rss_kib "$pids")
  taskset -c 1 python3 bench/idle_conns.py "${PORT[$peer]}" "$IDLE_CONNS" "$TOKEN" <"$W/idle.in" >"$W/idle.out" &
  local client=$!
  exec 4>"$W/idle.in"
  for _ in $(seq 1200); do # ≤ 120 s
    if grep -q '^open' "$W/idle.out" 2>/dev/null; then ready=1; break; fi
    kill -0 "$client" 2>/dev/null || break
    sleep 0.1
  done
  sleep 1 # let the last connections settle
  rss1=$(rss_kib "$pids")
  exec 4>&- # EOF: the client closes its connections and exits
  wait "$client" || true
  if [ -n "$ready" ]; then
    echo "$peer,idle_rss_mib,$(awk -v k="$rss1" 'BEGIN{print k/1024}')" >> "$OUT"
    echo "$peer,idle_kb_per_conn,$(awk -v a="$rss0" -v b="$rss1" -v n="$IDLE_CONNS" 'BEGIN{print (b-a)*1.024/n}')" >> "$OUT"
  else
    echo "# $peer: the $IDLE_CONNS idle connections could not all be opened" >> "$OUT"
  fi
  sleep 1 # closed connections are reaped before the next measurement
}

fleet() { # peer pids → CPU per event, RSS per agent, p99 arrival, events lost
  local peer=$1 pids=$2 rss0 before after out
  rss0=$(rss_kib "$pids")
  ( peak=0; while :; do r=$(rss_kib "$pids"); [ "$r" -gt "$peak" ] && peak=$r && echo "$peak" > "$W/fleet_peak"; sleep 0.1; done ) & local sampler=$!
  before=$(cpu_ticks)
  out=$(taskset -c 1 target/release/examples/fleet_load "127.0.0.1:${PORT[$peer]}" "$FLEET_AGENTS" "$FLEET_SECS" "$TOKEN" "$UP")
  after=$(cpu_ticks); kill $sampler; wait $sampler 2>/dev/null || true
  local peak sent arrived p99 ok
  peak=$(cat "$W/fleet_peak" 2>/dev/null || echo "$rss0"); rm -f "$W/fleet_peak"
  sent=$(grep -o 'sent=[0-9]*' <<<"$out" | cut -d= -f2)
  arrived=$(grep -o 'arrived=[0-9]*' <<<"$out" | cut -d= -f2)
  p99=$(grep -o 'p99_ms=[0-9.]*' <<<"$out" | cut -d= -f2)
  ok=$(grep -o 'ok_answers=[0-9]*' <<<"$out" | cut -d= -f2)
  [ "${ok:-0}" = "$FLEET_AGENTS" ] || echo "# $peer: only ${ok:-0} of $FLEET_AGENTS agents got a 2xx at the end of their stream" >> "$OUT"
  echo "$peer,fleet_cpu_us_per_event,$(awk -v t=$((after - before)) -v hz="$HZ" -v n="${arrived:-0}" 'BEGIN{print n ? t/hz*1e6/n : 0}')" >> "$OUT"
  echo "$peer,fleet_kb_per_agent,$(awk -v a="$rss0" -v b="$peak" -v n="$FLEET_AGENTS" 'BEGIN{print (b-a)*1.024/n}')" >> "$OUT"
  echo "$peer,fleet_p99_ms,${p99:-0}" >> "$OUT"
  echo "$peer,fleet_lost,$(( ${sent:-0} - ${arrived:-0} ))" >> "$OUT"
  sleep 1
}

for round in $(seq "$ROUNDS"); do
  read -r -a order <<<"${PEERS:-apm-auth-proxy nginx haproxy}"
  if [ $((round % 2)) -eq 0 ]; then
    for ((i = 0, j = ${#order[@]} - 1; i < j; i++, j--)); do t=${order[i]}; order[i]=${order[j]}; order[j]=$t; done
  fi
  for peer in "${order[@]}"; do
    pids=$(pids_of "${PORT[$peer]}")
    echo "round $round: $peer (pids $(echo $pids))" >&2
    if [ "$round" = 1 ]; then # before any load: the peer's idle footprint
      echo "$peer,start_rss_mib,$(awk -v k="$(rss_kib "$pids")" 'BEGIN{print k/1024}')" >> "$OUT"
    fi
    read -r rps p50 p99 reqs ticks non2xx < <(run_wrk "$peer" "Bearer $TOKEN" 0)
    [ "$non2xx" = 0 ] || echo "# $peer: $non2xx non-2xx responses in the keep-alive run" >> "$OUT"
    echo "$peer,ka_rps,$rps" >> "$OUT"; echo "$peer,ka_p50_ms,$p50" >> "$OUT"; echo "$peer,ka_p99_ms,$p99" >> "$OUT"
    echo "$peer,ka_cpu_us,$(awk -v t="$ticks" -v n="$reqs" -v hz="$HZ" 'BEGIN{print t/hz*1e6/n}')" >> "$OUT"
    if [ "$peer" = apm-auth-proxy ]; then
      read -r rps p50 p99 reqs ticks non2xx < <(run_wrk "$peer" "ApiKey $APIKEY" 0)
      [ "$non2xx" = 0 ] || echo "# $peer: $non2xx non-2xx responses in the API-key run" >> "$OUT"
      echo "$peer,ka_apikey_cpu_us,$(awk -v t="$ticks" -v n="$reqs" -v hz="$HZ" 'BEGIN{print t/hz*1e6/n}')" >> "$OUT"
    fi
    read -r rps p50 p99 reqs ticks non2xx < <(run_wrk "$peer" "Bearer wrong-token" 0)
    [ "$non2xx" = "$reqs" ] || echo "# $peer: only $non2xx of $reqs rejected in the 401 run" >> "$OUT"
    echo "$peer,rej_rps,$rps" >> "$OUT"
    echo "$peer,rej_cpu_us,$(awk -v t="$ticks" -v n="$reqs" -v hz="$HZ" 'BEGIN{print t/hz*1e6/n}')" >> "$OUT"
    read -r rps p50 p99 reqs ticks non2xx < <(run_wrk "$peer" "Bearer $TOKEN" 1)
    echo "$peer,hs_cps,$rps" >> "$OUT"
    echo "$peer,hs_cpu_us,$(awk -v t="$ticks" -v n="$reqs" -v hz="$HZ" 'BEGIN{print t/hz*1e6/n}')" >> "$OUT"
    # Large chunked upload: throughput, CPU per GiB, RSS growth (sampled every 50 ms).
    rss0=$(rss_kib "$pids")
    ( peak=0; while :; do r=$(rss_kib "$pids"); [ "$r" -gt "$peak" ] && peak=$r && echo "$peak" > "$W/peak"; sleep 0.05; done ) & sampler=$!
    before=$(cpu_ticks); start=$(date +%s.%N)
    head -c $((UPLOAD_MIB * 1048576)) /dev/zero | taskset -c 1 curl -sk --http1.1 -T - -X POST \
      -H "Authorization: Bearer $TOKEN" -o /dev/null "https://127.0.0.1:${PORT[$peer]}/intake/v2/events"
    end=$(date +%s.%N); after=$(cpu_ticks); kill $sampler; wait $sampler 2>/dev/null || true
    peak=$(cat "$W/peak" 2>/dev/null || echo "$rss0")
    echo "$peer,up_mbps,$(awk -v s="$start" -v e="$end" -v m="$UPLOAD_MIB" 'BEGIN{print m*1.048576/(e-s)}')" >> "$OUT"
    echo "$peer,up_cpu_s_gib,$(awk -v t=$((after - before)) -v hz="$HZ" -v m="$UPLOAD_MIB" 'BEGIN{print t/hz/(m/1024)}')" >> "$OUT"
    echo "$peer,up_rss_growth_mib,$(awk -v a="$rss0" -v b="$peak" 'BEGIN{print (b-a)/1024}')" >> "$OUT"
    # Idle keep-alive TLS connections: each handshakes, sends one POST, then stays open.
    # Last round only: every peer keeps (and later reuses) the memory after they close, which
    # would otherwise count in the next rounds' figures.
    if [ "$IDLE_CONNS" -gt 0 ] && [ "$round" = "$ROUNDS" ]; then idle_conns "$peer" "$pids"; fi
    # The agent fleet, last round only, on a freshly started peer: every peer keeps the
    # memory of the idle run's connections, in which the fleet would otherwise fit unseen.
    if [ "$FLEET_AGENTS" -gt 0 ] && [ "$round" = "$ROUNDS" ]; then
      stop_peer "$peer"; start_peer "$peer"; sleep 1
      fleet "$peer" "$(pids_of "${PORT[$peer]}")"
    fi
  done
done

# Authentication alone, in process, on the proxy's core (nothing else runs there now).
taskset -c 0 target/release/examples/bench_auth | while read -r metric ns; do
  echo "apm-auth-proxy,auth_${metric},$ns" >> "$OUT"
done

{
  echo "# mode: $([ "$ROUNDS" = 1 ] && echo quick || echo full), $ROUNDS round(s) × ${SECS}s, wrk -t1 -c32, ${UPLOAD_MIB} MiB upload, $IDLE_CONNS idle TLS connections, fleet of $FLEET_AGENTS agents × ${FLEET_SECS}s; $(nproc --all) CPUs: $(awk -F: '/model name/{print $2; exit}' /proc/cpuinfo | sed 's/^ //')"
  echo "# versions: $(target/release/apm-auth-proxy --version), $("$NGINX" -v 2>&1 | sed 's/.*: //'), $("$HAPROXY" -v | head -1 | awk '{print "haproxy " $3}'), $(openssl version | awk '{print "OpenSSL " $2}')"
  echo "# CPU 1 runs wrk and the upstream: when it saturates, req/s is co-limited by the load generator; compare CPU per request instead."
} >> "$OUT"
python3 bench/report.py "$OUT"
