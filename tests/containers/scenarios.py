"""The three ways users run the proxy, each started from the repository's own files and
crossed by a real agent (the official Elastic APM Python agent). Every check names what it
proves; a failed one raises, and run.py cleans up and fails the suite."""
import http.client
import json
import os
import pathlib
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.request

import yaml

import podman as pm
from podman import podman, text

PREFIX = "apmtest-"
# The one image name of the repository: docker/compose.yaml's default and the overlays'
# `images:` entry (scripts/check_deploy.py holds them to it).
IMAGE = "ghcr.io/apm-auth-proxy/apm-auth-proxy:0.1.0"
IMAGE_SIZE_GOAL = 40 * 1000 * 1000
TOKEN_HEADER = "Authorization"
PYTHON_AGENT = pm.ROOT / "tests" / "agents" / "python_agent.py"
ETC = "/etc/apm-auth-proxy"


class Checks:
    passed = 0

    def ok(self, what: str, condition: bool, detail: object = "") -> None:
        if not condition:
            raise AssertionError(f"{what}: {detail}")
        self.passed += 1
        print(f"containers: ok - {what}", flush=True)


CHECKS = Checks()
check = CHECKS.ok


def report_failure(e: BaseException) -> None:
    print("containers: FAILED", file=sys.stderr)
    traceback.print_exception(e, file=sys.stderr)


# ---------------------------------------------------------------- helpers

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def eventually(what: str, probe, seconds: float = 60, every: float = 0.5):
    """`probe()` until it returns something true, at most `seconds`; returns that value."""
    deadline = time.monotonic() + seconds
    last = None
    while time.monotonic() < deadline:
        try:
            last = probe()
            if last:
                return last
        except Exception as e:  # noqa: BLE001 - retried until the deadline
            last = e
        time.sleep(every)
    raise AssertionError(f"{what}: not within {seconds:.0f} s (last: {last!r})")


def make_secrets(root: pathlib.Path) -> dict:
    """A certificate for localhost, a secret token and an empty keys directory, readable by
    the image's user (65532) as Kubernetes and compose mount them."""
    (root / "tls").mkdir(parents=True)
    (root / "keys").mkdir()
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-keyout", str(root / "tls/tls.key"), "-out", str(root / "tls/tls.crt")],
                   check=True, capture_output=True)
    token = os.urandom(24).hex()
    (root / "secret-token").write_text(token + "\n")
    for path in (root, root / "tls", root / "keys", root / "tls/tls.key", root / "tls/tls.crt",
                 root / "secret-token"):
        os.chown(path, 65532, 65532)
    return {"token": token, "ca": str(root / "tls/tls.crt")}


def tls_context(ca: str) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=ca)


def post_events(port: int, ca: str, auth: str, lines: list[dict]) -> tuple[int, str]:
    body = "".join(json.dumps(line) + "\n" for line in lines).encode()
    conn = http.client.HTTPSConnection("localhost", port, context=tls_context(ca), timeout=30)
    try:
        conn.request("POST", "/intake/v2/events", body=body,
                     headers={TOKEN_HEADER: auth, "Content-Type": "application/x-ndjson"})
        answer = conn.getresponse()
        return answer.status, answer.read().decode(errors="replace")
    finally:
        conn.close()


def metadata(service: str) -> dict:
    return {"metadata": {"service": {"name": service, "agent": {"name": "python", "version": "6.0.0"}}}}


def event(i: int) -> dict:
    return {"transaction": {"id": f"{i:016x}", "trace_id": f"{i:032x}", "type": "request",
                            "duration": 1.0, "span_count": {"started": 0}}}


def stream_upload(port: int, ca: str, auth: str, service: str, events: int, gap: float,
                  started: threading.Event, result: dict) -> None:
    """One chunked event stream, an event every `gap` seconds, as agents send them."""
    try:
        conn = http.client.HTTPSConnection("localhost", port, context=tls_context(ca), timeout=60)
        conn.putrequest("POST", "/intake/v2/events")
        conn.putheader(TOKEN_HEADER, auth)
        conn.putheader("Content-Type", "application/x-ndjson")
        conn.putheader("Transfer-Encoding", "chunked")
        conn.endheaders()

        def chunk(line: dict) -> None:
            data = (json.dumps(line) + "\n").encode()
            conn.send(b"%x\r\n%s\r\n" % (len(data), data))

        chunk(metadata(service))
        for i in range(events):
            chunk(event(i))
            if i == 2:
                started.set()
            time.sleep(gap)
        conn.send(b"0\r\n\r\n")
        answer = conn.getresponse()
        result["status"] = answer.status
        result["body"] = answer.read().decode(errors="replace")
    except Exception as e:  # noqa: BLE001 - handed to the test thread
        result["error"] = repr(e)
    finally:
        started.set()


def python_agent(port: int, ca: str, **credential: str) -> None:
    env = dict(os.environ, APM_URL=f"https://localhost:{port}", APM_CA_FILE=ca)
    env.pop("APM_SECRET_TOKEN", None)
    env.pop("APM_API_KEY", None)
    if "token" in credential:
        env["APM_SECRET_TOKEN"] = credential["token"]
    else:
        env["APM_API_KEY"] = credential["api_key"]
    out = subprocess.run([sys.executable, str(PYTHON_AGENT)], env=env, capture_output=True,
                         text=True, timeout=60)
    check("the Python agent ran", out.returncode == 0, out.stderr)


def received(container: str) -> list[dict]:
    """What the stand-in APM Server logged: one JSON line per request."""
    lines = text(podman("logs", container)).splitlines()
    return [json.loads(line) for line in lines if line.startswith("{")]


def agent_events_arrived(container: str, service: str, at_least: int) -> list[dict]:
    def found():
        got = [r for r in received(container)
               if r["path"] == "/intake/v2/events" and service in r["services"]]
        return got if sum(r["lines"] for r in got) >= at_least else None
    return eventually(f"{at_least} lines of {service}'s events at {container}", found, 30)


def check_forwarded_without_credentials(records: list[dict], what: str) -> None:
    check(f"{what}: the APM Server received the events without Authorization",
          records and not any(r["authorization"] for r in records), records)


def admin_get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def proxy_lines(container: str) -> list[dict]:
    out = podman("logs", container)
    lines = (text(out) + (out.stderr or b"").decode(errors="replace")).splitlines()
    return [json.loads(line) for line in lines if line.startswith("{")]


def field(line: dict, dotted: str):
    """An ECS field, written flat (`a.b`) or nested."""
    if dotted in line:
        return line[dotted]
    value = line
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def check_security_context(container: str, what: str) -> None:
    info = pm.inspect("container", container)
    host = info["HostConfig"]
    check(f"{what}: runs as 65532", info["Config"]["User"].split(":")[0] == "65532", info["Config"]["User"])
    check(f"{what}: read-only root filesystem", host.get("ReadonlyRootfs") is True, host.get("ReadonlyRootfs"))
    caps = info.get("EffectiveCaps") or []
    check(f"{what}: no capabilities", caps == [], caps)
    uid = text(podman("top", container, "huser")).split()[1:]
    check(f"{what}: the process's user is 65532", uid and all(u == "65532" for u in uid), uid)


# ---------------------------------------------------------------- the image

def build_image(rust_image: str) -> None:
    pm.log(f"podman build -f docker/Dockerfile (RUST_IMAGE={rust_image}, RUNTIME_IMAGE={pm.DISTROLESS})")
    revision = subprocess.run(["git", "-C", str(pm.ROOT), "rev-parse", "--short=12", "HEAD"],
                              capture_output=True, text=True).stdout.strip() or "unknown"
    out = podman("build", "--format", "docker", "--pull=never", "-f", "docker/Dockerfile",
                 "--build-arg", f"RUST_IMAGE={rust_image}",
                 "--build-arg", f"REVISION={revision}",
                 "--build-arg", f"RUNTIME_IMAGE={pm.DISTROLESS}",
                 "-t", IMAGE, str(pm.ROOT), check=False, timeout=3600)
    check("the image builds from docker/Dockerfile and the repository's context", out.returncode == 0,
          (out.stdout or b"")[-4000:].decode(errors="replace") + (out.stderr or b"")[-4000:].decode(errors="replace"))
    # The build stage's image is not kept (1.2 GB a build); its caches of crates and compiled
    # dependencies are build-cache mounts, which stay.
    podman("image", "prune", "-f")
    info = pm.inspect("image", IMAGE)
    size = info["Size"]
    pm.log(f"image size: {size / 1e6:.1f} MB")
    check(f"the image is at most {IMAGE_SIZE_GOAL / 1e6:.0f} MB ({size / 1e6:.1f} MB)", size <= IMAGE_SIZE_GOAL, size)
    config = info["Config"]
    check("the image runs as 65532", config.get("User") == "65532:65532", config.get("User"))
    health = (info.get("Healthcheck") or config.get("Healthcheck") or {}).get("Test") or []
    check("the image's HEALTHCHECK asks liveness", "health" in health and "--live" in health, health)
    podman("create", "--name", PREFIX + "export", IMAGE)
    try:
        listing = subprocess.run(f"podman export {PREFIX}export | tar -t", shell=True, env=pm.ENV,
                                 capture_output=True, text=True, check=True).stdout.split()
    finally:
        podman("rm", "-f", PREFIX + "export")
    files = {f.lstrip("./").rstrip("/") for f in listing}
    forbidden = sorted(files & {"bin/sh", "usr/bin/sh", "bin/bash", "usr/bin/bash", "bin/busybox",
                                "usr/bin/apt", "usr/bin/apt-get", "usr/bin/dpkg"})
    check("no shell or package manager in the image", not forbidden and "usr/local/bin/apm-auth-proxy" in files,
          forbidden)
    shell = podman("run", "--rm", "--entrypoint", "/bin/sh", IMAGE, "-c", "true", check=False)
    check("a shell cannot be started in the image", shell.returncode != 0, text(shell))


def image_as_users_run_it() -> None:
    work = pathlib.Path(tempfile.mkdtemp(prefix=PREFIX))
    try:
        _image_as_users_run_it(work)
    finally:
        pm.remove_everything(PREFIX)
        shutil.rmtree(work, ignore_errors=True)


def run_proxy(name: str, network: str, secrets: pathlib.Path, state: str, port: int, admin: int) -> None:
    podman("run", "-d", "--name", name, "--network", network,
           "-p", f"127.0.0.1:{port}:8200", "-p", f"127.0.0.1:{admin}:8300",
           "--read-only", "--user", "65532:65532", "--cap-drop", "ALL",
           "--security-opt", "no-new-privileges",
           # A runtime's common default: a soft limit of 1,024 under a higher hard limit. (With
           # any --ulimit podman also sets RLIMIT_NPROC, to the host's limit unless given, which
           # this kind of host refuses; a lower one is allowed.)
           "--ulimit", "nofile=1024:16384", "--ulimit", "nproc=4096:4096",
           "-v", f"{pm.ROOT / 'docker' / 'proxy.toml'}:{ETC}/proxy.toml:ro",
           "-v", f"{secrets / 'tls'}:{ETC}/tls:ro",
           "-v", f"{secrets / 'secret-token'}:{ETC}/secrets/secret-token:ro",
           "-v", f"{secrets / 'keys'}:{ETC}/keys:ro",
           "-v", f"{state}:/var/lib/apm-auth-proxy",
           IMAGE)


def _image_as_users_run_it(work: pathlib.Path) -> None:
    secrets = work / "secrets"
    s = make_secrets(secrets)
    bearer = f"Bearer {s['token']}"
    network, state = PREFIX + "net", PREFIX + "state"
    apm, proxy = PREFIX + "apm-server", PREFIX + "proxy"
    port, admin = free_port(), free_port()
    podman("network", "create", network)
    podman("volume", "create", state)
    podman("run", "-d", "--name", apm, "--network", network, "--network-alias", "apm-server", pm.APM_SERVER)
    run_proxy(proxy, network, secrets, state, port, admin)
    pm.log(f"podman run {IMAGE}: --read-only --user 65532:65532 --cap-drop ALL no-new-privileges, "
           f"config, certificate, token and keys mounted read-only, published on 127.0.0.1:{port} "
           f"(agents) and 127.0.0.1:{admin} (admin)")

    eventually("the container's HEALTHCHECK passes",
               lambda: podman("healthcheck", "run", proxy, check=False).returncode == 0, 60)
    check("the container's HEALTHCHECK passes", True)
    check_security_context(proxy, "the proxy container")
    lines = proxy_lines(proxy)
    raised = [l for l in lines if "open-file limit" in str(field(l, "message"))]
    check("the open-file soft limit 1024 is raised to the hard limit 16384",
          raised and field(raised[0], "apm_auth_proxy.from") == 1024 and field(raised[0], "apm_auth_proxy.to") == 16384,
          raised or lines[:5])

    status, _ = post_events(port, s["ca"], "Bearer wrong", [metadata("nobody")])
    check("a wrong token is refused with 401", status == 401, status)
    python_agent(port, s["ca"], token=s["token"])
    records = agent_events_arrived(apm, "python-agent-test", 3)
    check_forwarded_without_credentials(records, "secret token")
    access = [l for l in proxy_lines(proxy) if field(l, "http.response.status_code") == 202]
    check("the proxy logged the agent's request as 202", access, proxy_lines(proxy)[-5:])

    # A key created by the image's own CLI into the mounted keys directory is picked up by
    # the running proxy without a restart.
    created = podman("run", "--rm", "--user", "65532:65532", "-v", f"{secrets / 'keys'}:{ETC}/keys",
                     IMAGE, "apikey", "--config", f"{ETC}/proxy.toml", "create", "--name", "container-key",
                     "--privileges", "event:write", "--json")
    credentials = json.loads(text(created))["credentials"]
    status = eventually("the new API key is accepted by the running proxy",
                        lambda: post_events(port, s["ca"], f"ApiKey {credentials}",
                                            [metadata("keyed-service"), event(1)])[0] == 202, 30)
    check("a key appended to the mounted keys file is accepted without a restart", status)
    check_forwarded_without_credentials(agent_events_arrived(apm, "keyed-service", 2), "API key")

    # An APM Server outage makes the proxy unready, not unhealthy: restarting it would not help.
    podman("stop", "-t", "2", apm)
    eventually("/readyz turns 503 while the APM Server is down", lambda: admin_get(admin, "/readyz")[0] == 503, 30)
    health = podman("healthcheck", "run", proxy, check=False)
    check("the HEALTHCHECK stays healthy while the APM Server is down (liveness)", health.returncode == 0, text(health))
    # It comes back at another address (another container holds the old one): the proxy
    # follows its name there.
    old_ip = pm.inspect("container", apm)["NetworkSettings"]["Networks"][network]["IPAddress"]
    podman("run", "-d", "--name", PREFIX + "address-holder", "--network", network, "--ip", old_ip, pm.APM_SERVER)
    podman("start", apm)
    new_ip = pm.inspect("container", apm)["NetworkSettings"]["Networks"][network]["IPAddress"]
    check("the restarted APM Server has another address", new_ip != old_ip, (old_ip, new_ip))
    eventually("/readyz is 200 again once the APM Server is back", lambda: admin_get(admin, "/readyz")[0] == 200, 30)
    status, _ = post_events(port, s["ca"], bearer, [metadata("after-move"), event(1)])
    check("events reach the APM Server at its new address (the url's name is resolved again)",
          status == 202 and agent_events_arrived(apm, "after-move", 2), status)

    usage_before = json.loads(admin_get(admin, "/usage")[1])["credentials"]

    # `podman stop` while an agent streams: the stream completes, the container exits 0.
    started, result = threading.Event(), {}
    uploader = threading.Thread(target=stream_upload,
                                args=(port, s["ca"], bearer, "streaming-service", 35, 0.2, started, result))
    uploader.start()
    started.wait(30)
    began = time.monotonic()
    podman("stop", "-t", "45", proxy, timeout=60)
    stopped_after = time.monotonic() - began
    uploader.join(60)
    check("a streaming upload in flight at `podman stop` completes with 202", result.get("status") == 202, result)
    stream = agent_events_arrived(apm, "streaming-service", 36)
    check("every event of the stream reached the APM Server", sum(r["lines"] for r in stream) == 36, stream)
    exit_code = pm.inspect("container", proxy)["State"]["ExitCode"]
    check("the container exits 0 after the drain", exit_code == 0, exit_code)
    check(f"the container stopped well inside its 45 s grace ({stopped_after:.1f} s)", stopped_after < 30, stopped_after)

    # The usage state is on the volume: a restarted container continues from it.
    podman("start", proxy)
    eventually("the restarted container is live", lambda: admin_get(admin, "/livez")[0] == 200, 30)
    usage_after = json.loads(admin_get(admin, "/usage")[1])["credentials"]
    token_before = [u for u in usage_before if u["kind"] == "token"]
    token_after = {u["name"]: u for u in usage_after if u["kind"] == "token"}
    check("the usage state survives a restart (volume)",
          token_before and all(token_after.get(u["name"], {}).get("requests_accepted", 0) >= u["requests_accepted"] > 0
                               for u in token_before), (usage_before, usage_after))


# ---------------------------------------------------------------- compose

def compose(work: pathlib.Path, env: dict, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    out = subprocess.run(["podman-compose", "-p", PREFIX + "compose", "-f", str(work / "compose.yaml"), *args],
                         env=env, cwd=work, capture_output=True, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"podman-compose {' '.join(args)} exited {out.returncode}:\n"
                           f"{out.stdout.decode(errors='replace')[-3000:]}{out.stderr.decode(errors='replace')[-3000:]}")
    return out


def compose_as_written() -> None:
    """docker/compose.yaml and docker/demo-secrets.sh copied as they are (so the run writes
    nothing into the checkout), started with podman-compose: the proxy image built above,
    the stand-in APM Server for the real one, the ports published on loopback."""
    work = pathlib.Path(tempfile.mkdtemp(prefix=PREFIX)) / "docker"
    work.mkdir()
    for name in ("compose.yaml", "demo-secrets.sh"):
        shutil.copy2(pm.ROOT / "docker" / name, work / name)
    port, admin = free_port(), free_port()
    env = dict(pm.ENV, APM_SERVER_IMAGE=pm.APM_SERVER, APM_AUTH_PROXY_IMAGE=IMAGE,
               APM_AUTH_PROXY_PUBLISH=f"127.0.0.1:{port}", APM_AUTH_PROXY_ADMIN_PUBLISH=f"127.0.0.1:{admin}")
    try:
        subprocess.run(["bash", str(work / "demo-secrets.sh")], check=True, capture_output=True, timeout=60)
        secrets = work / "secrets"
        key_mode = (secrets / "tls/tls.key").stat().st_mode & 0o777
        keys_mode = (secrets / "keys").stat().st_mode & 0o777
        check("demo-secrets.sh: the private key and token are readable by the container's user alone",
              key_mode == 0o400 and (secrets / "tls/tls.key").stat().st_uid == 65532
              and (secrets / "secret-token").stat().st_mode & 0o077 == 0, oct(key_mode))
        check("demo-secrets.sh: the keys directory is not world-writable", keys_mode & 0o002 == 0, oct(keys_mode))
        token = (secrets / "secret-token").read_text().strip()
        ca = str(secrets / "tls/tls.crt")
        pm.log(f"podman-compose up -d --no-build (APM_SERVER_IMAGE={pm.APM_SERVER}, ports 127.0.0.1:{port}/{admin})")
        compose(work, env, "up", "-d", "--no-build")
        eventually("the compose proxy is ready", lambda: admin_get(admin, "/readyz")[0] == 200, 60)
        apm = PREFIX + "compose_apm-server_1"
        python_agent(port, ca, token=token)
        records = agent_events_arrived(apm, "python-agent-test", 3)
        check_forwarded_without_credentials(records, "compose")
        check_security_context(PREFIX + "compose_apm-auth-proxy_1", "the compose proxy")

        # The README's `APM_SERVER_IMAGE=… up -d`: APM Server replaced by another image.
        podman("tag", pm.APM_SERVER, pm.APM_SERVER_OTHER)
        compose(work, dict(env, APM_SERVER_IMAGE=pm.APM_SERVER_OTHER), "up", "-d", "--no-build")
        image = pm.inspect("container", apm)["ImageName"]
        check("`APM_SERVER_IMAGE=… up -d` replaces APM Server", image == pm.APM_SERVER_OTHER, image)
        eventually("the compose proxy is ready again", lambda: admin_get(admin, "/readyz")[0] == 200, 60)
        status, _ = post_events(port, ca, f"Bearer {token}", [metadata("after-replace"), event(1)])
        check("events reach the replaced APM Server", status == 202 and agent_events_arrived(apm, "after-replace", 2), status)

        compose(work, env, "down", "-v")
        left = [n for kind, fmt in (("container", "{{.Names}}"), ("network", "{{.Name}}"), ("volume", "{{.Name}}"))
                for n in text(podman(kind, "ls" if kind != "container" else "ps", *(["-a"] if kind == "container" else []),
                                     "--format", fmt)).split() if n.startswith(PREFIX + "compose")]
        check("`down -v` leaves no container, network or volume", not left, left)
    finally:
        subprocess.run(["podman-compose", "-p", PREFIX + "compose", "-f", str(work / "compose.yaml"), "down", "-v"],
                       env=env, cwd=work, capture_output=True, timeout=120)
        shutil.rmtree(work.parent, ignore_errors=True)


# ---------------------------------------------------------------- Kubernetes

# What podman 4.3's `kube play` cannot run: validated against the schemas by
# scripts/check_deploy.py only.
NOT_RUN = {"Namespace", "Service", "NetworkPolicy", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Certificate"}


def render(overlay: str) -> list[dict]:
    out = subprocess.run(["kubectl", "kustomize", str(pm.ROOT / "docker/kubernetes/overlays" / overlay)],
                         capture_output=True, text=True, check=True, timeout=60)
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def user_secrets(secrets: pathlib.Path, token: str) -> list[dict]:
    """The two Secrets as README's `kubectl create secret …` makes them (no keys.toml: the
    keys item is optional), as ConfigMaps with the same files: podman 4.3 crashes on Secret
    volumes."""
    return [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "apm-auth-proxy-tls"},
         "data": {"tls.crt": (secrets / "tls/tls.crt").read_text(), "tls.key": (secrets / "tls/tls.key").read_text()}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "apm-auth-proxy-secrets"},
         "data": {"secret-token": token}},
    ]


def for_podman(docs: list[dict], port: int, admin: int) -> tuple[list[dict], list[str]]:
    """The rendered overlay as podman 4.3 can play it; each change is named in the log:
    kinds it cannot run left out, native sidecars as ordinary containers (it knows no init
    container that keeps running), Secret volumes as ConfigMap volumes, the stand-in APM
    Server's image, the Deployment's name prefixed (cleanup), and the ports published on
    loopback (hostPort, hostIP)."""
    played, skipped = [], []
    for doc in docs:
        if doc["kind"] in NOT_RUN:
            skipped.append(f"{doc['kind']}/{doc['metadata']['name']}")
            continue
        if doc["kind"] == "Deployment":
            doc["metadata"]["name"] = PREFIX + doc["metadata"]["name"]
            spec = doc["spec"]["template"]["spec"]
            init = spec.pop("initContainers", [])
            sidecars = [c for c in init if c.pop("restartPolicy", None) == "Always"]
            if len(sidecars) != len(init):
                spec["initContainers"] = [c for c in init if c not in sidecars]
            spec["containers"] = sidecars + spec["containers"]
            for c in spec["containers"]:
                if c["name"] == "apm-server":
                    c["image"] = pm.APM_SERVER
                for p in c.get("ports", []):
                    host = {"apm": port, "admin": admin}.get(p.get("name"))
                    if c["name"] == "apm-auth-proxy" and host:
                        p["hostPort"], p["hostIP"] = host, "127.0.0.1"
            for v in spec.get("volumes", []):
                if "secret" in v:
                    secret = v.pop("secret")
                    v["configMap"] = {"name": secret.pop("secretName"), **secret}
        played.append(doc)
    return played, skipped


def kubernetes_pods_as_written() -> None:
    work = pathlib.Path(tempfile.mkdtemp(prefix=PREFIX))
    try:
        s = make_secrets(work / "secrets")
        for overlay in ("sidecar", "standalone"):
            play_overlay(overlay, work, s)
    finally:
        for manifest in work.glob("*.yaml"):
            podman("kube", "down", str(manifest), check=False)
        pm.remove_everything(PREFIX)
        shutil.rmtree(work, ignore_errors=True)


def pod_container(name: str) -> str:
    """The container `kube play` made for the pod's container `name` (`<pod>-<name>`)."""
    names = text(podman("ps", "--format", "{{.Names}}")).split()
    found = [n for n in names if n.startswith(PREFIX) and n.endswith("-" + name)]
    if len(found) != 1:
        raise AssertionError(f"one running container for {name}: {names}")
    return found[0]


def play_overlay(overlay: str, work: pathlib.Path, s: dict) -> None:
    port, admin = free_port(), free_port()
    docs, skipped = for_podman(render(overlay), port, admin)
    manifest = work / f"{overlay}.yaml"
    manifest.write_text(yaml.safe_dump_all(user_secrets(work / "secrets", s["token"]) + docs))
    args = ["kube", "play", str(manifest)]
    if overlay == "standalone":
        # The in-cluster `apm-server` Service: the stand-in by that name on the pod's network.
        network = PREFIX + "kube"
        podman("network", "create", network)
        podman("run", "-d", "--name", PREFIX + "kube-apm-server", "--network", network,
               "--network-alias", "apm-server", pm.APM_SERVER)
        args[2:2] = ["--network", network]
        apm = PREFIX + "kube-apm-server"
    else:
        apm = None
    pm.log(f"overlays/{overlay}: podman kube play ({', '.join(d['kind'] for d in docs)}); "
           f"only validated: {', '.join(skipped)}")
    podman(*args, timeout=180)
    eventually(f"overlays/{overlay}: /livez (the liveness probe) passes",
               lambda: admin_get(admin, "/livez")[0] == 200, 60)
    eventually(f"overlays/{overlay}: /readyz (the readiness probe) passes",
               lambda: admin_get(admin, "/readyz")[0] == 200, 60)
    check(f"overlays/{overlay}: the liveness and readiness probes pass", True)
    check_security_context(pod_container("apm-auth-proxy"), f"overlays/{overlay}: the proxy container")
    apm = apm or pod_container("apm-server")
    python_agent(port, s["ca"], token=s["token"])
    check_forwarded_without_credentials(agent_events_arrived(apm, "python-agent-test", 3), f"overlays/{overlay}")
    podman("kube", "down", str(manifest), timeout=120)
    left = [n for n in text(podman("pod", "ps", "--format", "{{.Name}}")).split() if n.startswith(PREFIX)]
    check(f"overlays/{overlay}: `podman kube down` removes the pod", not left, left)
    pm.remove_everything(PREFIX)
