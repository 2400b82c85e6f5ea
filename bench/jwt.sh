#!/usr/bin/env bash
# What a JWT costs per request, in process (examples/bench_jwt.rs): a Bearer secret token, a
# cached JWT (an agent reusing its token) and a first verification per algorithm, set against
# the proxy's CPU per keep-alive request from bench/RESULTS.md. Release build.
#   bench/jwt.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh build >/dev/null
cargo run --release --locked --example bench_jwt 2>/dev/null | tee /tmp/bench_jwt.txt
# The proxy's CPU per keep-alive request in the latest full bench/run.sh (bench/RESULTS.md).
PER_REQUEST_US=42.2
python3 - "$PER_REQUEST_US" <<'PY'
import sys
vals = dict(l.split() for l in open("/tmp/bench_jwt.txt") if l.strip())
extra = float(vals["jwt_cached_extra_ns"]) / 1000
per_request = float(sys.argv[1])
print(f"cached JWT vs secret token: +{extra:.2f} µs per request = {100 * extra / per_request:.1f} % of the "
      f"{per_request} µs CPU of a keep-alive request (goal: within 5 %)")
PY
