#!/usr/bin/env python3
"""Aggregate bench/run.sh samples (peer,metric,value lines) into one Markdown table:
medians over rounds, with ratios to nginx."""
import statistics
import sys
from collections import defaultdict

samples = defaultdict(list)
notes = []
for line in open(sys.argv[1]):
    line = line.strip()
    if line.startswith("#"):
        notes.append(line[1:].strip())
        continue
    peer, metric, value = line.split(",")
    samples[(peer, metric)].append(float(value))

peers = ["apm-auth-proxy", "nginx", "haproxy"]
columns = [
    ("ka_rps", "keep-alive req/s", "{:.0f}"),
    ("ka_cpu_us", "keep-alive µs CPU/req", "{:.1f}"),
    ("ka_p50_ms", "keep-alive p50 ms", "{:.2f}"),
    ("ka_p99_ms", "keep-alive p99 ms", "{:.2f}"),
    ("rej_rps", "401 req/s", "{:.0f}"),
    ("rej_cpu_us", "401 µs CPU/req", "{:.1f}"),
    ("hs_cps", "full TLS 1.3 handshakes/s", "{:.0f}"),
    ("hs_cpu_us", "µs CPU/handshake", "{:.1f}"),
    ("up_mbps", "upload MB/s", "{:.0f}"),
    ("up_cpu_s_gib", "upload CPU s/GiB", "{:.2f}"),
    ("up_rss_growth_mib", "upload RSS growth MiB", "{:.1f}"),
    ("start_rss_mib", "idle RSS before any load MiB", "{:.1f}"),
    ("idle_rss_mib", "RSS with 5,000 idle TLS conns MiB", "{:.1f}"),
    ("idle_kb_per_conn", "KB per idle TLS conn", "{:.1f}"),
    ("fleet_cpu_us_per_event", "fleet µs CPU/event", "{:.1f}"),
    ("fleet_kb_per_agent", "fleet KB RSS/agent", "{:.1f}"),
    ("fleet_p99_ms", "fleet event p99 ms", "{:.2f}"),
    ("fleet_lost", "fleet events lost", "{:.0f}"),
]

def median(peer, metric):
    v = samples.get((peer, metric))
    return statistics.median(v) if v else None

print("| peer | " + " | ".join(c[1] for c in columns) + " |")
print("| --- | " + " | ".join("---:" for _ in columns) + " |")
for peer in peers:
    cells = []
    for key, _, fmt in columns:
        m = median(peer, key)
        cells.append("n/a" if m is None else fmt.format(m))
    print(f"| {peer} | " + " | ".join(cells) + " |")
print()
print("Ratios to nginx (same run; for CPU, latency and RSS lower is better):")
print()
print("| peer | " + " | ".join(c[1] for c in columns) + " |")
print("| --- | " + " | ".join("---:" for _ in columns) + " |")
for peer in peers:
    cells = []
    for key, _, _ in columns:
        m, base = median(peer, key), median("nginx", key)
        if key == "fleet_lost":  # a count, not a ratio
            cells.append("n/a" if m is None else f"{m:.0f}")
            continue
        cells.append("n/a" if m is None or not base else f"{m / base:.2f}×")
    print(f"| {peer} | " + " | ".join(cells) + " |")
apikey_ns = median("apm-auth-proxy", "auth_apikey_ns")
token_ns = median("apm-auth-proxy", "auth_token_ns")
ka_token = median("apm-auth-proxy", "ka_cpu_us")
ka_apikey = median("apm-auth-proxy", "ka_apikey_cpu_us")
if apikey_ns and ka_apikey:
    # Passthrough (no auth) = the API-key request minus authentication itself.
    share = apikey_ns / 1000 / (ka_apikey - apikey_ns / 1000)
    print()
    print(f"API-key auth: authenticate() takes {apikey_ns / 1000:.2f} µs (token: {token_ns / 1000:.2f} µs) "
          f"of the proxy's {ka_apikey:.1f} µs CPU per keep-alive request: **{share * 100:.1f} % more CPU "
          f"than passthrough without auth**. End to end, API key vs token: "
          f"{ka_apikey:.1f} vs {ka_token:.1f} µs/request ({ka_apikey / ka_token:.2f}×, within run-to-run noise).")
gate_ns = median("apm-auth-proxy", "auth_gate_ns")
rewrite_ns = median("apm-auth-proxy", "auth_rewrite_ns")
if gate_ns and rewrite_ns and ka_token:
    own = (gate_ns + rewrite_ns) / 1000
    print()
    print(f"The proxy's own per-request work, timed in process: the admission decision (path, route, "
          f"throttle, token check, privileges) {gate_ns / 1000:.2f} µs and the upstream header rewrite "
          f"{rewrite_ns / 1000:.2f} µs — {own:.2f} µs, {own / ka_token * 100:.1f} % of the {ka_token:.1f} µs "
          f"CPU per keep-alive request; the rest is Pingora, rustls and the kernel.")
for n in notes:
    print(f"\n- {n}")
