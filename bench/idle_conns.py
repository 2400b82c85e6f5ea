#!/usr/bin/env python3
"""Hold N idle keep-alive TLS connections open against one peer, for bench/run.sh.

Each connection completes a full TLS 1.3 handshake and one authenticated POST (the answer
is read whole), then stays open and idle. Prints "open N" once all are established, then
waits for a line on stdin (or EOF) before closing them, so the caller can sample the peer's
RSS in between.

    idle_conns.py PORT COUNT TOKEN
"""
import http.client
import ssl
import sys
import time


def main() -> int:
    port, count, token = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    body = b'{"metadata":{"service":{"name":"bench","agent":{"name":"go","version":"2.6.0"}}}}\n'
    headers = {
        "Authorization": f"Bearer {token}",
        "Content-Type": "application/x-ndjson",
    }
    conns = []
    deadline = time.monotonic() + 120
    for _ in range(count):
        if time.monotonic() > deadline:
            print(f"idle_conns: gave up after {len(conns)} connections", file=sys.stderr)
            return 1
        conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=10)
        conn.request("POST", "/intake/v2/events", body=body, headers=headers)
        resp = conn.getresponse()
        resp.read()
        if resp.status != 202:
            print(f"idle_conns: answer {resp.status}", file=sys.stderr)
            return 1
        conns.append(conn)
    print(f"open {len(conns)}", flush=True)
    sys.stdin.readline()
    for conn in conns:
        conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
