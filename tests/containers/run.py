#!/usr/bin/env python3
"""The deployment files, run for real with podman: the image built from docker/Dockerfile and
run as users run it, docker/compose.yaml started with podman-compose, and the Kubernetes
overlays' pods started with `podman kube play` — a real agent's events through each, and
what the stand-in APM Server received checked. Prints each check, what it ran and how long
each part took; exits 1 on the first failure, after cleaning up.

Usage: tests/containers/run.py [image|compose|kube ...]   (default: all three parts)

Needs root, as CI has it (rootful podman, debootstrap, files given to the image's user 65532).
As another user, run it with sudo; APM_AUTH_PROXY_SKIP_CONTAINERS=1 skips it, saying so."""
import os
import sys
import time

import podman as pm
import scenarios

PARTS = {
    "image": scenarios.image_as_users_run_it,
    "compose": scenarios.compose_as_written,
    "kube": scenarios.kubernetes_pods_as_written,
}


def main() -> int:
    wanted = sys.argv[1:] or list(PARTS)
    unknown = [w for w in wanted if w not in PARTS]
    if unknown:
        print(__doc__, file=sys.stderr)
        return 2
    if os.geteuid() != 0:
        if os.environ.get("APM_AUTH_PROXY_SKIP_CONTAINERS") == "1":
            print("containers: SKIPPED (APM_AUTH_PROXY_SKIP_CONTAINERS=1): the deployment files were not run")
            return 0
        print("containers: the container tests need root (rootful podman, debootstrap, chown 65532): "
              "run scripts/test.sh with sudo, or set APM_AUTH_PROXY_SKIP_CONTAINERS=1 to skip them", file=sys.stderr)
        return 1
    began = time.monotonic()
    timings: list[tuple[str, float]] = []
    pm.remove_everything(scenarios.PREFIX)
    try:
        started = time.monotonic()
        pm.make_distroless()
        rust = pm.make_rust()
        standin = pm.ROOT / "target" / "debug" / "examples" / "standin_apm_server"
        if not standin.exists():
            raise RuntimeError(f"{standin} is missing (cargo test builds the examples)")
        pm.make_apm_server(standin)
        timings.append(("stand-in images", time.monotonic() - started))

        started = time.monotonic()
        scenarios.build_image(rust)
        timings.append(("image build", time.monotonic() - started))
        for part in wanted:
            started = time.monotonic()
            PARTS[part]()
            timings.append((part, time.monotonic() - started))
    except Exception as e:  # noqa: BLE001 - reported, then the run fails
        scenarios.report_failure(e)
        pm.remove_everything(scenarios.PREFIX)
        print(f"containers: {scenarios.CHECKS.passed} passed, 1 failed")
        return 1
    finally:
        for name, seconds in timings:
            pm.log(f"{name}: {seconds:.0f} s")
        pm.log(f"total: {time.monotonic() - began:.0f} s")
    pm.remove_everything(scenarios.PREFIX)
    print(f"containers: {scenarios.CHECKS.passed} passed, 0 failed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
