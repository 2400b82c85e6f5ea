#!/usr/bin/env python3
"""Open COUNT TLS connections to 127.0.0.1:PORT, CONCURRENCY handshakes at a time, hold them
all open, then close them; for bench/accept.sh. Prints one line:
`opened=N seconds=S per_second=R` (N < COUNT when the peer refused some).

    accept_conns.py PORT COUNT [CONCURRENCY]
"""
import asyncio
import ssl
import sys
import time


async def main() -> int:
    port, count = int(sys.argv[1]), int(sys.argv[2])
    concurrency = int(sys.argv[3]) if len(sys.argv) > 3 else 100
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    gate = asyncio.Semaphore(concurrency)
    held = []

    async def one() -> None:
        async with gate:
            try:
                _, writer = await asyncio.wait_for(
                    asyncio.open_connection("127.0.0.1", port, ssl=ctx), timeout=30)
                held.append(writer)
            except (OSError, asyncio.TimeoutError, ssl.SSLError):
                pass

    started = time.monotonic()
    await asyncio.gather(*(one() for _ in range(count)))
    seconds = time.monotonic() - started
    print(f"opened={len(held)} seconds={seconds:.2f} per_second={len(held) / seconds:.0f}", flush=True)
    for w in held:
        w.close()
    return 0 if held else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
