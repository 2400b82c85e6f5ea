#!/usr/bin/env bash
# vendor/pingora-core must be the crates.io release of pingora-core plus
# vendor/pingora-core.patch, nothing else: fetch the release through cargo (into a throwaway
# project), apply the patch, and compare. Exits 1 naming the files that differ.
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' vendor/pingora-core/Cargo.toml | head -1)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/fetch/src"
printf '[package]\nname = "fetch"\nversion = "0.0.0"\nedition = "2021"\n[dependencies]\npingora-core = { version = "=%s", default-features = false }\n' \
  "$version" > "$work/fetch/Cargo.toml"
touch "$work/fetch/src/lib.rs"
(cd "$work/fetch" && cargo fetch -q)
crate=$(ls "${CARGO_HOME:-$HOME/.cargo}"/registry/cache/*/"pingora-core-$version.crate" | head -1)
tar -xzf "$crate" -C "$work"
release="$work/pingora-core-$version"
patch -s -p1 -d "$release" < vendor/pingora-core.patch
if ! diff -r -q -x .cargo_vcs_info.json -x .cargo-ok -x Cargo.lock "$release" vendor/pingora-core; then
  echo "check_vendor: vendor/pingora-core is not pingora-core $version + vendor/pingora-core.patch" >&2
  exit 1
fi
echo "check_vendor: vendor/pingora-core is pingora-core $version + vendor/pingora-core.patch"
