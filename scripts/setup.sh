#!/usr/bin/env bash
# Installs what a fresh machine lacks, and nothing that is already there.
#   scripts/setup.sh build   cmake (Pingora's zlib-ng build needs it)
#   scripts/setup.sh test    the above, plus curl, openssl, the Python APM agent and sslyze for the tests
set -euo pipefail

want="${1:-build}"
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

apt_packages=()
command -v cmake >/dev/null 2>&1 || apt_packages+=(cmake)
command -v cc >/dev/null 2>&1 || apt_packages+=(build-essential)
if [ "$want" = test ]; then
  command -v curl >/dev/null 2>&1 || apt_packages+=(curl)
  command -v openssl >/dev/null 2>&1 || apt_packages+=(openssl)
  command -v python3 >/dev/null 2>&1 || apt_packages+=(python3 python3-pip)
fi
if [ "${#apt_packages[@]}" -gt 0 ]; then
  echo "setup: installing ${apt_packages[*]}" >&2
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${apt_packages[@]}" >/dev/null
fi

pip_install() {
  python3 -m pip install --quiet --disable-pip-version-check "$@" \
    || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages "$@"
}
if [ "$want" = test ]; then
  # module:package — the official Python APM agent, and the TLS scanner.
  for pair in elasticapm:elastic-apm sslyze:sslyze; do
    if ! python3 -c "import ${pair%%:*}" >/dev/null 2>&1; then
      echo "setup: installing ${pair#*:} from PyPI" >&2
      pip_install "${pair#*:}"
    fi
  done
fi
