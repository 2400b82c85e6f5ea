#!/usr/bin/env bash
# Demo material for docker/compose.yaml under docker/secrets/: a self-signed certificate for
# localhost, a random secret token, and a keys directory. Development only: use real
# certificates and keep secrets out of the working tree in production.
# The container runs as uid 65532: the files are given to it, readable by it alone (this
# needs root, or sudo, for the chown); the certificate stays readable for agents' CA files.
set -euo pipefail
cd "$(dirname "$0")"
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
umask 077
mkdir -p secrets/tls secrets/keys
if [ ! -f secrets/tls/tls.crt ]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
    -keyout secrets/tls/tls.key -out secrets/tls/tls.crt -subj /CN=localhost \
    -addext subjectAltName=DNS:localhost,IP:127.0.0.1 2>/dev/null
fi
[ -f secrets/secret-token ] || openssl rand -hex 32 > secrets/secret-token
# Secrets 0400 and directories 0700, owned by the container's user; `apikey create` run in the
# image (as 65532) writes keys.toml into keys/. The certificate (public) and the directories
# leading to it stay readable, so agents on this host can trust it.
as_root chown -R 65532:65532 secrets
as_root chmod 0400 secrets/tls/tls.key secrets/secret-token
as_root chmod 0444 secrets/tls/tls.crt
as_root chmod 0711 secrets
as_root chmod 0755 secrets/tls
as_root chmod 0700 secrets/keys
echo "docker/secrets/: tls/tls.crt, tls/tls.key, secret-token (Authorization: Bearer \$(sudo cat docker/secrets/secret-token))"
