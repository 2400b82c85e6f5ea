#!/usr/bin/env bash
# What the upstream pool path costs per request: the keep-alive POST workload of
# bench/run.sh (TLS 1.3, a token, 1 KiB ndjson, wrk -t1 -c32) through
#   single   the binary from before upstream pools (BASE, default 42bd02c: one upstream.url)
#   pool1    this tree, the same single url (now a pool of one member, health-checked)
#   pool3    this tree, `urls` with three members (three stand-in upstreams, round robin)
# alternated round by round in one run; admin listener and access log off in all three.
# Proxy pinned to CPU 0 (its CPU per request is CPU 0's busy time), wrk and stand-ins on CPU 1.
#   bench/pool.sh [--quick]
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=3 SECS=10
if [ "${1:-}" = "--quick" ]; then ROUNDS=1 SECS=4; fi
BASE=${BASE:-42bd02c}
source bench/prelude.sh
bench_prereqs
cargo build --release --locked --bin apm-auth-proxy --example bench_upstream >&2
# The base binary, built once into target/bench-base (its own target dir, kept for reruns).
if [ ! -x "target/bench-base/$BASE/apm-auth-proxy" ]; then
  rm -rf target/bench-base/src && mkdir -p "target/bench-base/$BASE"
  git worktree add --detach target/bench-base/src "$BASE" >&2
  (cd target/bench-base/src && CARGO_TARGET_DIR=../target cargo build --release --locked --bin apm-auth-proxy >&2)
  cp target/bench-base/target/release/apm-auth-proxy "target/bench-base/$BASE/"
  git worktree remove --force target/bench-base/src
fi
taskset -cp 1 $$ >/dev/null

source bench/common.sh
TOKEN=bench-$(openssl rand -hex 16)
bench_cert
PORT=18463
for up in 18221 18222 18223; do
  taskset -c 1 target/release/examples/bench_upstream "127.0.0.1:$up" & PIDS+=($!)
done

config() { # name → proxy.toml
  local upstream='url = "http://127.0.0.1:18221"' 
  case $1 in
    pool3) upstream='urls = ["http://127.0.0.1:18221", "http://127.0.0.1:18222", "http://127.0.0.1:18223"]' ;;
  esac
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
$upstream
[admin]
enabled = false
[log]
level = "warn"
access_log = false
EOT
}
binary() { if [ "$1" = single ]; then echo "target/bench-base/$BASE/apm-auth-proxy"; else echo target/release/apm-auth-proxy; fi; }

declare -A US
for round in $(seq "$ROUNDS"); do
  for name in single pool1 pool3; do
    config "$name" > "$W/$name.toml"
    # 0.5 s: the first health checks
    BENCH_AUTH="Bearer $TOKEN" BENCH_LOG="$W/$name.log" measure "$name" "$(binary "$name")" "$W/$name.toml" \
      "https://127.0.0.1:$PORT/intake/v2/events" bench/post.lua 0.5
  done
done
echo "# bench/pool.sh: $ROUNDS round(s) × ${SECS}s, wrk -t1 -c32 keep-alive 1 KiB POSTs, TLS 1.3; base $BASE; $(awk -F: '/model name/{print $2; exit}' /proc/cpuinfo | sed 's/^ //')"
ratios configuration single single pool1 pool3
