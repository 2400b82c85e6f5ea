# Sourced by the bench scripts once they have built: a work directory `$W`, removed at exit;
# `PIDS`, the processes the script starts, stopped at exit (SIGTERM, then waited for; a script
# that sets STOP_SIGNAL=KILL before sourcing this stops them at once, without waiting for the
# proxy's drain); `free_port` prints a free loopback port.
W="$(mktemp -d)"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -s "${STOP_SIGNAL:-TERM}" "$p" 2>/dev/null || true; done
  if [ "${STOP_SIGNAL:-TERM}" != KILL ]; then wait 2>/dev/null || true; fi
  rm -rf "$W"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
