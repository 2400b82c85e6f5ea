#!/usr/bin/env bash
# Run the proxy with the shipped proxy.toml (or the config given with --config).
# Installs cmake first if it is missing. Extra arguments go to `apm-auth-proxy`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh build
exec cargo run --release --locked -- "${@:-run}"
