#!/usr/bin/env bash
# The whole test suite: the source tree's shape, docker/ validated offline, formatting, lints,
# unit and integration tests (including the real agents), then the deployment files run for
# real in containers (tests/containers/run.py: the image built and run, compose, the
# Kubernetes pods). Installs what is missing first.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh test
python3 scripts/check_structure.py
python3 scripts/check_deploy.py
bash scripts/check_vendor.sh
cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings
cargo test --locked
python3 tests/containers/run.py
