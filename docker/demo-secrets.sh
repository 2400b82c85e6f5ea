#!/usr/bin/env bash
# Demo material for docker/compose.yaml under docker/secrets/: a self-signed certificate for
# localhost, a random secret token, and an empty keys directory. Development only: use real
# certificates and keep secrets out of the working tree in production.
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p secrets/tls secrets/keys
if [ ! -f secrets/tls/tls.crt ]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
    -keyout secrets/tls/tls.key -out secrets/tls/tls.crt -subj /CN=localhost \
    -addext subjectAltName=DNS:localhost,IP:127.0.0.1 2>/dev/null
fi
[ -f secrets/secret-token ] || openssl rand -hex 32 > secrets/secret-token
# The container runs as uid 65532: it must be able to read what is mounted.
chmod 0644 secrets/tls/tls.crt secrets/tls/tls.key secrets/secret-token
chmod 0755 secrets secrets/tls
# `apikey create` run in the image (as 65532) writes keys.toml here.
chmod 0777 secrets/keys
echo "docker/secrets/: tls/tls.crt, tls/tls.key, secret-token (Authorization: Bearer \$(cat docker/secrets/secret-token))"
