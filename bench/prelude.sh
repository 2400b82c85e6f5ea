# Sourced first by the bench scripts that compare runs of the proxy: what they all need.
#   bench_prereqs   2 CPUs; cmake (scripts/setup.sh build), wrk, openssl and taskset installed
#   cpu_ticks       CPU 0's busy time so far, in clock ticks (HZ per second)
#   median "a b c"  the median of a list of numbers
#   bench_cert      a self-signed ECDSA P-256 certificate for localhost: $W/cert.pem, $W/key.pem
#                   (after bench/common.sh made $W)
#   nginx_conf      the nginx peer's configuration, $W/nginx.conf (see below)
bench_prereqs() {
  [ "$(nproc)" -ge 2 ] || { echo "bench: needs 2 CPUs" >&2; exit 1; }
  scripts/setup.sh build
  local missing=()
  command -v wrk >/dev/null || missing+=(wrk)
  command -v openssl >/dev/null || missing+=(openssl)
  command -v taskset >/dev/null || missing+=(util-linux)
  if [ "${#missing[@]}" -gt 0 ]; then
    as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}
# CPU 0's busy ticks (user, nice, system, irq, softirq; not idle, iowait or steal): the peer
# under test is all that runs there. Not "the peer's ticks + CPU 0's softirq ticks": the kernel
# charges softirq work done while the peer runs to the peer's time as well, so that sum counted
# it twice (≈ 20 % too much for this proxy's keep-alive run).
cpu_ticks() { awk '$1=="cpu0"{print $2 + $3 + $4 + $7 + $8}' /proc/stat; }
HZ=$(getconf CLK_TCK)
median() { tr ' ' '\n' <<<"$1" | grep . | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
bench_cert() {
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$W/key.pem" \
    -out "$W/cert.pem" -days 2 -subj /CN=localhost -addext subjectAltName=DNS:localhost 2>/dev/null
}

# measure NAME BINARY CONFIG URL LUA [SETTLE]: BINARY run with CONFIG (listening on $PORT)
# pinned to CPU 0, SETTLE seconds to start, then `wrk -t1 -c32 -d$SECS -s LUA URL` on CPU 1
# (the caller's BENCH_* settings in its environment); the proxy's CPU µs per request (CPU 0's
# busy time) is added to US[NAME]; the proxy's log goes to $BENCH_LOG (default /dev/null). The
# caller declares `declare -A US`.
measure() {
  local name=$1 binary=$2 config=$3 url=$4 lua=$5 settle=${6:-0} pid before after out reqs non2xx
  taskset -c 0 "$binary" run --config "$config" 2>"${BENCH_LOG:-/dev/null}" & pid=$!
  for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.1; done
  sleep "$settle"
  before=$(cpu_ticks)
  out=$(taskset -c 1 wrk -t1 -c32 -d"${SECS}s" -s "$lua" "$url")
  after=$(cpu_ticks)
  reqs=$(awk '/requests in/{print $1}' <<<"$out")
  non2xx=$(awk '/Non-2xx/{print $5}' <<<"$out")
  [ -z "$non2xx" ] || echo "# $name: $non2xx non-2xx responses" >&2
  US[$name]="${US[$name]:-} $(awk -v t=$((after - before)) -v hz="$HZ" -v n="$reqs" 'BEGIN { printf "%.2f", t / hz * 1e6 / n }')"
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
}

# ratios COLUMN BASE NAME…: the table of each NAME's median against BASE's.
ratios() {
  local column=$1 base_name=$2 base m name
  shift 2
  echo "| $column | proxy CPU µs/request (median) | vs $base_name | runs |"
  echo "| --- | --- | --- | --- |"
  base=$(median "${US[$base_name]}")
  for name in "$@"; do
    m=$(median "${US[$name]}")
    awk -v n="$name" -v m="$m" -v b="$base" -v r="${US[$name]}" 'BEGIN { printf "| %s | %.2f | %.3f× (%+.2f µs) |%s |\n", n, m, m / b, m - b, r }'
  done
}

# nginx_conf PORT UPSTREAM TOKEN [DIRECTIVES]: the nginx every comparison runs, as $W/nginx.conf
# (after bench_cert): one worker, TLS 1.3 on 127.0.0.1:PORT, `Authorization: Bearer TOKEN`
# checked with a `map`, anything else answered 401 in APM Server's words, the rest proxied to
# UPSTREAM (host:port) without the credential, unbuffered both ways; DIRECTIVES are added to
# the main context (CPU pinning, no master process under valgrind).
nginx_conf() {
  local port=$1 upstream=$2 token=$3 directives=${4:-}
  mkdir -p "$W/nginx"
  cat > "$W/nginx.conf" <<EOT
worker_processes 1;
$directives
pid $W/nginx/nginx.pid;
error_log $W/nginx/error.log warn;
daemon off;
worker_rlimit_nofile 16384;
events { worker_connections 8000; }
http {
  access_log off;
  client_body_temp_path $W/nginx; proxy_temp_path $W/nginx; fastcgi_temp_path $W/nginx;
  uwsgi_temp_path $W/nginx; scgi_temp_path $W/nginx;
  client_max_body_size 0;
  map \$http_authorization \$authorized { "Bearer $token" 1; default 0; }
  upstream apm { server $upstream; keepalive 64; }
  server {
    listen 127.0.0.1:$port ssl;
    ssl_certificate $W/cert.pem; ssl_certificate_key $W/key.pem;
    ssl_protocols TLSv1.3;
    default_type application/json;
    location / {
      if (\$authorized = 0) {
        add_header X-Content-Type-Options nosniff always;
        return 401 '{"error":"authentication failed"}\n';
      }
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Authorization "";
      proxy_request_buffering off;
      proxy_buffering off;
      proxy_pass http://apm;
    }
  }
}
EOT
}
